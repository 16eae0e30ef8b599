package e2e

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// TestArchiveRecordsReadByOpenPGPTools: every record of the clinical record
// is an OpenPGP message that GnuPG, Sequoia and RNP decrypt with the
// archive's private key alone, small and large (a record of several 64 KiB
// chunks), without sealpost. An auditor is never tied to sealpost to read it.
func TestArchiveRecordsReadByOpenPGPTools(t *testing.T) {
	testutil.RequireTools(t, "swaks", "gpg", "sq", "rnp", "rnpkeys")
	r := StartRelay(t, RelayOptions{})
	dir := t.TempDir()

	large := filepath.Join(dir, "large.txt")
	var body strings.Builder
	for i := 0; body.Len() < 300<<10; i++ {
		fmt.Fprintf(&body, "line %d of the session summary, written out at length\r\n", i)
	}
	body.WriteString("END-OF-LARGE-MARKER\r\n")
	os.WriteFile(large, []byte(body.String()), 0o600)
	for _, args := range [][]string{
		{"--to", "colleague@practice.example", "--header", "Subject: small", "--body", "SMALL-MARKER"},
		{"--to", "colleague@practice.example", "--header", "Subject: large", "--body", large},
	} {
		if out, ok := Swaks(t, r.SwaksArgs(args...)...); !ok {
			t.Fatalf("swaks: %s", out)
		}
	}

	var payloads [][]byte
	testutil.WaitWithin(t, 10*time.Second, "both messages in the archive", func() bool {
		payloads = messagePayloads(t, filepath.Join(r.DataDir, "archive"))
		return len(payloads) >= 2
	})

	key := filepath.Join(r.DataDir, "archive-private-key.asc")
	os.Mkdir(filepath.Join(dir, "gnupg"), 0o700)
	run(t, dir, "gpg", "--homedir", "gnupg", "--batch", "--import", key)
	os.Mkdir(filepath.Join(dir, "rnp"), 0o700)
	run(t, dir, "rnpkeys", "--homedir", "rnp", "--import", key)
	found := map[string]bool{}
	for i, p := range payloads {
		rec := filepath.Join(dir, fmt.Sprintf("record-%d.pgp", i))
		os.WriteFile(rec, p, 0o600)
		for _, tool := range []struct {
			name string
			args []string
		}{
			{"gpg", []string{"gpg", "--homedir", "gnupg", "--batch", "--status-fd", "2", "--output", "-", "--decrypt", rec}},
			{"sq", []string{"sq", "decrypt", "--recipient-key", key, rec}},
			{"rnp", []string{"rnp", "--homedir", "rnp", "--password", "", "--decrypt", rec, "--output", "-"}},
		} {
			out := run(t, dir, tool.args[0], tool.args[1:]...)
			if !strings.Contains(out, "SMALL-MARKER") && !strings.Contains(out, "END-OF-LARGE-MARKER") {
				t.Errorf("%s: record %d (%d octets) decrypted to neither message:\n%.500s", tool.name, i, len(p), out)
			}
			for _, m := range []string{"SMALL-MARKER", "END-OF-LARGE-MARKER"} {
				if strings.Contains(out, m) {
					found[tool.name+" "+m] = true
				}
			}
			if tool.name == "gpg" && !strings.Contains(out, "DECRYPTION_OKAY") {
				t.Errorf("gpg: record %d: no DECRYPTION_OKAY (integrity check)", i)
			}
		}
	}
	if len(found) != 6 {
		t.Errorf("decrypted: %v; want both messages by each of gpg, sq and rnp", found)
	}
}

// messagePayloads reads the archive's segments as an auditor's script
// would (the layout is in archive/segment.go) and returns the OpenPGP
// payloads of the message records.
func messagePayloads(t *testing.T, archiveDir string) [][]byte {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(archiveDir, "seg-*.log"))
	var out [][]byte
	for _, seg := range segs {
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		for len(b) >= 8 && string(b[:4]) == "SPR1" {
			hl := int(binary.BigEndian.Uint32(b[4:]))
			if len(b) < 8+hl+8 {
				break
			}
			var h struct {
				Kind string `json:"kind"`
			}
			json.Unmarshal(b[8:8+hl], &h)
			pl := int(binary.BigEndian.Uint64(b[8+hl:]))
			if len(b) < 8+hl+8+pl+32 {
				break
			}
			if h.Kind == "message" {
				out = append(out, bytes.Clone(b[8+hl+8:8+hl+8+pl]))
			}
			b = b[8+hl+8+pl+32:]
		}
	}
	return out
}
