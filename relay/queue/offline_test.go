package queue

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules"
)

// TestOfflineDropRecordsFirst: `sealpost queue drop` while no relay runs
// archives the outcomes the archive lacked, then the drop, and removes the
// message only after that; if the archive cannot take them, nothing is
// removed.
func TestOfflineDropRecordsFirst(t *testing.T) {
	dir := t.TempDir()
	sp, err := openSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := spoolMessage(t, sp, rules.Copy{Name: "a", Recipients: []string{rcpt1, rcpt2}, Protection: record.Encrypted})
	id := e.meta.ID
	// rcpt1 got it while the archive was down: that outcome waits in the state.
	e.setStatus(rcpt1, rcptDelivered, "250 ok", time.Now())
	e.state.Unrecorded = []archive.Event{{MessageID: id, Time: time.Now(), Kind: archive.Delivered, Recipients: []string{rcpt1}, Reply: "250 ok"}}
	if err := e.saveState(); err != nil {
		t.Fatal(err)
	}
	sp.close()

	oq, err := OpenOffline(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer oq.Close()
	if _, err := oq.Drop(id, func([]archive.Event) error { return errors.New("archive disk full") }); err == nil || !strings.Contains(err.Error(), "not dropped") {
		t.Fatalf("drop with the archive failing: %v", err)
	}
	if l := oq.List(); len(l) != 1 {
		t.Fatalf("queue %+v; the message must stay while the drop is not recorded", l)
	}
	var recorded []string
	if _, err := oq.Drop(id, func(evs []archive.Event) error {
		for _, ev := range evs {
			recorded = append(recorded, fmt.Sprint(ev.Kind, ev.Recipients))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(recorded, " "), fmt.Sprint(archive.Delivered, []string{rcpt1})+" "+fmt.Sprint(archive.Dropped, []string{rcpt2}); got != want {
		t.Errorf("recorded %s, want %s", got, want)
	}
	if _, err := os.Stat(e.path); !os.IsNotExist(err) {
		t.Errorf("the dropped message is still in the spool: %v", err)
	}
}
