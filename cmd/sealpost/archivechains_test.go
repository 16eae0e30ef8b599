package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/record"
)

// nodeArchives writes the chains of relays relay-a and relay-b in
// root/relay-a and root/relay-b, each a data_dir's layout (archive/,
// archive-head, the archive key a first start leaves), with a few messages.
func nodeArchives(t *testing.T) (root string) {
	t.Helper()
	root = t.TempDir()
	ctx := context.Background()
	for n, node := range []string{"relay-a", "relay-b"} {
		dataDir := filepath.Join(root, node)
		pub, _, err := archive.EnsureKey(dataDir, "")
		if err != nil {
			t.Fatal(err)
		}
		a, err := archive.Open(archive.Options{Dir: filepath.Join(dataDir, "archive"), PublicKey: pub, Node: node})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			id := node + "-" + string(rune('a'+i))
			body := "From: therapist@practice.example\r\nTo: anna@client.example\r\nSubject: Tuesday\r\nMessage-ID: <" + id + "@practice.example>\r\n\r\nSee you.\r\n"
			m := archive.Message{ID: id, Time: time.Date(2026, 12, 7, 9, 2*i+n, 0, 0, time.UTC), Direction: archive.Outbound, Account: "therapist",
				Sender: "therapist@practice.example", Decisions: []record.Decision{{Recipient: "anna@client.example", Address: "anna@client.example", Protection: record.Internal}}}
			if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
				t.Fatal(err)
			}
		}
		a.Close()
	}
	return root
}

func TestArchiveVerifySeveralNodes(t *testing.T) {
	root := nodeArchives(t)
	a, b := filepath.Join(root, "relay-a", "archive"), filepath.Join(root, "relay-b", "archive")
	for _, args := range [][]string{{"--archive", root}, {"--archive", a, "--archive", b}} {
		stdout, stderr, code := runCLI(t, "", append([]string{"archive", "verify"}, args...)...)
		if code != 0 || !strings.Contains(stdout, "relay-a: The chain verifies: 4 records") || !strings.Contains(stdout, "relay-b: The chain verifies: 4 records") ||
			!strings.Contains(stdout, "Every chain verifies: 2 nodes (relay-a, relay-b).") {
			t.Fatalf("verify %v: exit %d\n%s%s", args, code, stdout, stderr)
		}
	}
	if _, stderr, code := runCLI(t, "", "archive", "verify", "--archive", root, "--expect", "1:"+strings.Repeat("0", 64)); code != 2 || !strings.Contains(stderr, "NODE:SEQ:HASH") {
		t.Errorf("an --expect without its node among two chains: exit %d %s", code, stderr)
	}

	out := filepath.Join(t.TempDir(), "export")
	stdout, stderr, code := runCLI(t, "", "archive", "export", "--archive", root, "--out", out,
		"--key", filepath.Join(root, "relay-a", archive.PrivateKeyFile), "--key", filepath.Join(root, "relay-b", archive.PrivateKeyFile))
	if code != 0 || !strings.Contains(stdout, "Exported 6 messages") || !strings.Contains(stdout, "of 2 nodes") || !strings.Contains(stdout, "  node relay-b: 3 messages, chain head 4:") {
		t.Fatalf("export: exit %d\n%s%s", code, stdout, stderr)
	}
	if stdout, stderr, code := runCLI(t, "", "archive", "verify", "--archive", root, "--expect-manifest", filepath.Join(out, "manifest.json")); code != 0 {
		t.Fatalf("verify against the export's chain heads: exit %d\n%s%s", code, stdout, stderr)
	}

	// Without relay-a's head file its end cannot be checked: that chain
	// fails unless --no-head says the folders are all there is.
	headA := filepath.Join(root, "relay-a", "archive-head")
	saved, _ := os.ReadFile(headA)
	os.Remove(headA)
	if stdout, stderr, code := runCLI(t, "", "archive", "verify", "--archive", root); code != 1 || !strings.Contains(stdout, "relay-a: FAILED: the end of the chain cannot be checked") ||
		!strings.Contains(stderr, "node relay-a failed") {
		t.Errorf("relay-a without its head file: exit %d\n%s%s", code, stdout, stderr)
	}
	if stdout, stderr, code := runCLI(t, "", "archive", "verify", "--archive", root, "--no-head"); code != 0 {
		t.Errorf("--no-head: exit %d\n%s%s", code, stdout, stderr)
	}
	os.WriteFile(headA, saved, 0o600)

	// A record of relay-b's changed: relay-b fails, named; relay-a verifies.
	seg := filepath.Join(b, "seg-00000001.log")
	raw, _ := os.ReadFile(seg)
	raw[len(raw)-100] ^= 1 // in the last record's payload
	os.WriteFile(seg, raw, 0o600)
	stdout, stderr, code = runCLI(t, "", "archive", "verify", "--archive", root)
	if code != 1 || !strings.Contains(stderr, "the chain of node relay-b failed verification") || !strings.Contains(stdout, "relay-b: FAIL seg-00000001.log") ||
		!strings.Contains(stdout, "relay-a: The chain verifies") || strings.Contains(stdout, "Every chain verifies") {
		t.Fatalf("a changed record in relay-b's chain: exit %d\n%s%s", code, stdout, stderr)
	}
}

// FuzzParseExpect: --expect values of any form are parsed or refused as
// bad usage, never more; what parses names a 64-digit lower-case hash, and
// NODE:SEQ:HASH files the point under its node.
func FuzzParseExpect(f *testing.F) {
	f.Fuzz(func(t *testing.T, v string) {
		got, err := parseExpect(fileList{v}, nil)
		if err != nil {
			var ue usageError
			if !errors.As(err, &ue) {
				t.Fatalf("%q: %v is not a usage error", v, err)
			}
			return
		}
		n := 0
		for node, pts := range got {
			if strings.Contains(node, ":") {
				t.Errorf("%q: node %q", v, node)
			}
			for _, p := range pts {
				n++
				if len(p.Hash) != 64 || strings.ToLower(p.Hash) != p.Hash || !strings.HasSuffix(strings.ToLower(v), p.Hash) {
					t.Errorf("%q: hash %q", v, p.Hash)
				}
			}
		}
		if n != 1 {
			t.Errorf("%q: %d points", v, n)
		}
	})
}
