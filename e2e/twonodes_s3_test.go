package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// TestTwoNodesFromTheBucket: two relays of one practice copy their chains
// into one bucket (NODE/ under it). An auditor with [archive.s3] alone and
// both archive keys verifies every node's chain from the bucket, each on
// its own, and exports both merged: every message either node answered
// 250 to is in the export, in its node's chain.
func TestTwoNodesFromTheBucket(t *testing.T) {
	s3 := testutil.StartVersityGW(t)
	bucket := s3.NewBucket()
	access, secret := s3.WriteKeys(t.TempDir())
	bucketTOML := fmt.Sprintf("[archive.s3]\nendpoint = %q\nbucket = %q\nregion = \"us-east-1\"\naccess_key_file = %q\nsecret_key_file = %q\ntail_interval = \"1s\"\n",
		s3.Endpoint, bucket, access, secret)
	relays := map[string]*Relay{}
	metrics := map[string]string{}
	sent := map[string][]string{}
	for _, node := range []string{"relay-a", "relay-b"} {
		metrics[node] = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		relays[node] = StartRelay(t, RelayOptions{Sections: fmt.Sprintf("[metrics]\nlisten = %q\n[archive]\nnode = %q\n", metrics[node], node) + bucketTOML})
	}
	for i := range 3 {
		for _, node := range []string{"relay-a", "relay-b"} {
			out, ok := Swaks(t, relays[node].SwaksArgs("--to", "colleague@practice.example", "--header", fmt.Sprintf("Subject: Case conference %d", i),
				"--body", "Notes for the case conference.")...)
			if !ok || !strings.Contains(out, "250 2.0.0 OK: queued as ") {
				t.Fatalf("%s did not accept message %d:\n%s", node, i, out)
			}
			sent[node] = append(sent[node], queuedID(t, out))
		}
	}
	for node, addr := range metrics {
		testutil.WaitWithin(t, 60*time.Second, node+"'s record in the bucket", func() bool {
			lag, pending := uploadMetrics(t, addr)
			return pending == 0 && lag == 0
		})
	}

	auditor := t.TempDir()
	cfg := filepath.Join(auditor, "auditor.toml")
	os.WriteFile(cfg, []byte(bucketTOML), 0o600)
	// The newest records reach the bucket with the next copy of the
	// segment being written (tail_interval): the auditor exports until
	// the export holds them.
	var missing []string
	n := 0
	testutil.WaitWithin(t, 60*time.Second, "every message answered 250 in an export from the bucket", func() bool {
		n++
		exp := filepath.Join(auditor, fmt.Sprintf("export-%d", n))
		out, errOut, code := runSealpost(t, Sealpost(t), "archive", "export", "--s3", "-c", cfg, "--verify", "--out", exp,
			"--key", filepath.Join(relays["relay-a"].DataDir, "archive-private-key.asc"), "--key", filepath.Join(relays["relay-b"].DataDir, "archive-private-key.asc"))
		if code != 0 || !strings.Contains(out, "of 2 nodes") {
			t.Fatalf("archive export --s3 of both nodes: exit %d\n%s%s", code, out, errOut)
		}
		missing = missingFromExport(t, exp, sent)
		return len(missing) == 0
	})
	out, errOut, code := runSealpost(t, Sealpost(t), "archive", "verify", "--s3", "-c", cfg)
	if code != 0 || !strings.Contains(out, "Node relay-a: downloading") || !strings.Contains(out, "relay-b: The chain verifies") ||
		!strings.Contains(out, "Every chain verifies: 2 nodes (relay-a, relay-b).") {
		t.Fatalf("archive verify --s3 of both nodes: exit %d\n%s%s", code, out, errOut)
	}
	// One node's chain alone: an export as of one archive.
	exp := filepath.Join(auditor, "export-relay-a")
	out, errOut, code = runSealpost(t, Sealpost(t), "archive", "export", "--s3", "--node", "relay-a", "-c", cfg, "--out", exp,
		"--key", filepath.Join(relays["relay-a"].DataDir, "archive-private-key.asc"))
	if code != 0 || strings.Contains(out, "Node relay-b") || !strings.Contains(out, "Exported 3 messages") {
		t.Fatalf("archive export --s3 --node relay-a: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(exp, "seal.pub")); err != nil {
		t.Errorf("one node's export has no seal.pub: %v", err)
	}
}

// missingFromExport is what of sent (message ids by the node that
// answered 250) the export in exp does not hold in that node's chain; it
// fails the test unless both chains verified.
func missingFromExport(t *testing.T, exp string, sent map[string][]string) []string {
	t.Helper()
	var m struct {
		Chains []struct {
			Node     string `json:"node"`
			Verified bool   `json:"verified"`
		} `json:"chains"`
		Messages []struct {
			ID   string `json:"id"`
			Node string `json:"node"`
		} `json:"messages"`
	}
	b, err := os.ReadFile(filepath.Join(exp, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Chains) != 2 || !m.Chains[0].Verified || !m.Chains[1].Verified {
		t.Fatalf("the export's chains: %+v", m.Chains)
	}
	in := map[string]string{}
	for _, msg := range m.Messages {
		in[msg.ID] = msg.Node
	}
	var missing []string
	for node, ids := range sent {
		for _, id := range ids {
			if in[id] != node {
				missing = append(missing, node+"/"+id)
			}
		}
	}
	return missing
}
