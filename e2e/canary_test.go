package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// TestPHICanaries sends mail whose subject, body and client addresses carry
// unique markers, through every decision (consented, encrypted, internal,
// refused), then looks for the markers where they must never be: the logs
// (text and JSON), /metrics, and every file sealpost wrote outside the
// provider's copy. The registry and the keyring hold client addresses by
// purpose; they must not hold a subject or a body. The archive must hold
// nothing in clear.
func TestPHICanaries(t *testing.T) {
	testutil.RequireTools(t, "swaks", "gpg", "smtp-sink")
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) { canaryRun(t, format) })
	}
}

func marker(kind string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return "canary" + kind + hex.EncodeToString(b)
}

func canaryRun(t *testing.T, format string) {
	subject, body := marker("subj"), marker("body")
	consented := marker("consented") + "@client.example"
	keyed := marker("keyed") + "@client.example"
	refused := marker("refused") + "@client.example"
	addresses := []string{consented, keyed, refused}
	content := []string{subject, body}

	dir := t.TempDir()
	pub := gpgKey(t, dir, "keyed", keyed, "future-default", "never")
	sink := StartSink(t)
	tmp := t.TempDir()
	metrics := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	r := StartRelay(t, RelayOptions{Sink: sink, LogFormat: format, Env: []string{"TMPDIR=" + tmp},
		Sections: fmt.Sprintf("[metrics]\nlisten = %q\n", metrics)})
	if _, errOut, code := r.Run(t, "", "consent", "add", consented, "--evidence", "signed form"); code != 0 {
		t.Fatal(errOut)
	}
	if _, errOut, code := r.Run(t, "", "keys", "import", pub); code != 0 {
		t.Fatal(errOut)
	}

	if out, ok := Swaks(t, r.SwaksArgs("--to", consented+","+keyed+",colleague@practice.example",
		"--header", "Subject: "+subject, "--body", "Dear client, "+body)...); !ok {
		t.Fatalf("swaks: %s", out)
	}
	if out, ok := Swaks(t, r.SwaksArgs("--to", refused, "--header", "Subject: "+subject, "--body", body)...); ok {
		t.Fatalf("the refused recipient was accepted: %s", out)
	}
	testutil.WaitWithin(t, 30*time.Second, "three copies at the sink", func() bool {
		n := 0
		for _, m := range sink.Messages(t) {
			n += len(m.To)
		}
		return n == 3
	})
	testutil.WaitWithin(t, 10*time.Second, "an empty queue", func() bool { return queueEmpty(t, r) })
	_, scraped := get(t, "http://"+metrics+"/metrics")
	r.Stop(t)

	find := func(where, text string, markers []string) {
		t.Helper()
		low := strings.ToLower(text)
		for _, m := range markers {
			if strings.Contains(low, strings.ToLower(m)) {
				t.Errorf("%s contains %q", where, m)
			}
		}
	}
	all := append(append([]string{}, addresses...), content...)
	find("the relay's log", r.Logs.String(), all)
	find("/metrics", scraped, all)
	if !strings.Contains(r.Logs.String(), "recipient refused") {
		t.Fatalf("the log lacks the refusal; is it logging at all?\n%s", r.Logs.String())
	}

	err := filepath.WalkDir(r.DataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(r.DataDir, path)
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		switch {
		case strings.HasPrefix(rel, "spool"+string(filepath.Separator)) && strings.HasSuffix(rel, ".msg"):
			t.Errorf("%s is still in the spool after delivery", rel)
		case strings.HasPrefix(rel, "registry.db"), strings.HasPrefix(rel, "keyring.db"):
			find(rel, string(b), content)
		default:
			find(rel, string(b), all)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(tmp)
	for _, e := range ents {
		t.Errorf("sealpost left %s in its temporary folder", e.Name())
	}
}
