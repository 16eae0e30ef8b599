package queue

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/ids"
	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/relay/internal/relaytest"
	"github.com/sealpost/sealpost/rules"
)

// TestCrashWhileArchiving: the spool file and the archive record of a
// message are made durable at the same time; a crash between the two can
// leave a committed file whose record never made it. Its sender was never
// told 250, so the next start removes it (and says so in the archive); a
// file whose record is there is delivered.
func TestCrashWhileArchiving(t *testing.T) {
	spool := filepath.Join(t.TempDir(), "spool")
	s, err := openSpool(spool)
	if err != nil {
		t.Fatal(err)
	}
	recorded, unrecorded := ids.New(time.Now()), ids.New(time.Now())
	for _, id := range []string{recorded, unrecorded} {
		in, err := s.newIncoming(id, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		w, _ := in.Create("plain")
		io.WriteString(w, relaytest.Message(testFrom, "a@practice.example", "notes "+id, "x"))
		w.Close()
		if err := in.Commit(Envelope{Account: testUser, Sender: testFrom, Copies: []rules.Copy{{Name: "plain", Recipients: []string{"a@practice.example"}, Protection: record.Internal}}}, true); err != nil {
			t.Fatal(err)
		}
		in.f.Close() // the crash: never confirmed
	}
	s.close()

	arch := &relaytest.Archive{Messages: []archive.Message{{ID: recorded}}}
	dlv := &scriptedDlv{}
	q := openTestQueue(t, spool, dlv, arch, 2, nil)
	if err := q.Start(); err != nil {
		t.Fatal(err)
	}
	defer q.Stop(5 * time.Second)
	testutil.WaitFor(t, "the recorded message delivered", func() bool { return dlv.calls() == 1 && len(q.List()) == 0 })
	if got := dlv.sent[0].body; !strings.Contains(got, "notes "+recorded) {
		t.Errorf("delivered the wrong message:\n%s", got)
	}
	if _, err := os.Stat(filepath.Join(spool, queueDir, unrecorded+msgSuffix)); !os.IsNotExist(err) {
		t.Error("the message without its record is still spooled")
	}
	if k := arch.EventKinds(unrecorded); len(k) != 1 || k[0] != archive.Aborted {
		t.Errorf("the message without its record is not marked aborted in the archive: %v", k)
	}
}
