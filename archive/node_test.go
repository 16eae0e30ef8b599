package archive

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeChain writes n messages (and their deliveries) into a new archive
// of node, with a segment closed half way, and returns its fixture.
func writeChain(t *testing.T, node string, n int) *fixture {
	t.Helper()
	f := newFixture(t)
	a, err := Open(Options{Dir: f.dir, PublicKey: f.pub, Now: f.clock, Node: node})
	if err != nil {
		t.Fatal(err)
	}
	writeMessages(t, f, a, 1, n)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	return f
}

func writeMessages(t *testing.T, f *fixture, a *Archive, from, to int) {
	t.Helper()
	ctx := context.Background()
	for i := from; i <= to; i++ {
		m, body := testMessage(i, "anna@client.example")
		m.Time = f.clock()
		if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		if err := a.RecordEvent(ctx, Event{MessageID: m.ID, Time: m.Time, Kind: Delivered, Recipients: []string{"anna@client.example"}}); err != nil {
			t.Fatal(err)
		}
		if i == (from+to)/2 {
			if err := a.CloseSegment(ctx); err != nil {
				t.Fatal(err)
			}
		}
		f.advance(time.Minute)
	}
}

// headerNodes is the node each record's clear header names, in order.
func headerNodes(t *testing.T, dir string) (kinds, nodes []string) {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range segs {
		if err := scanHeaders(filepath.Join(dir, s), func(h *header, _ []byte) {
			kinds, nodes = append(kinds, h.Kind), append(nodes, h.Node)
		}); err != nil {
			t.Fatal(err)
		}
	}
	return kinds, nodes
}

func TestEveryRecordNamesItsNode(t *testing.T) {
	f := writeChain(t, "relay-a", 4)
	kinds, nodes := headerNodes(t, f.dir)
	if kinds[0] != kindInit || len(kinds) < 10 {
		t.Fatalf("records %v", kinds)
	}
	for i, n := range nodes {
		if n != "relay-a" {
			t.Errorf("record %d (%s) names node %q", i+1, kinds[i], n)
		}
	}
	var out bytes.Buffer
	rep, err := VerifyWith(f.dir, &out, VerifyOptions{})
	if err != nil || rep.Node != "relay-a" || !strings.Contains(out.String(), "The chain of node relay-a.") {
		t.Fatalf("verify: %v, node %q\n%s", err, rep.Node, out.String())
	}
	if b := mustRead(f.dir, segName(1)); !bytes.Contains(b, []byte(`"node":"relay-a"`)) {
		t.Error("the node is not in the clear header")
	}
	// The practice's only relay: no node in any header, as before nodes.
	f = writeChain(t, "", 2)
	for _, s := range []string{segName(1), segName(2)} {
		if bytes.Contains(mustRead(f.dir, s), []byte(`"node"`)) {
			t.Errorf("%s of a chain without a node names one", s)
		}
	}
}

// TestOpenRefusesAnotherNodesChain: a data_dir copied to the second
// server by mistake is refused there with words that say what happened;
// a chain without a name takes the one configured.
func TestOpenRefusesAnotherNodesChain(t *testing.T) {
	for _, tt := range []struct {
		name, written, opened string
		refused               []string // words the refusal holds; nil: opens
	}{
		{"the same node", "relay-a", "relay-a", nil},
		{"another node", "relay-a", "relay-b", []string{`"relay-a"`, `archive.node is "relay-b"`, "data_dir of its own"}},
		{"a node's chain on a relay without a name", "relay-a", "", []string{`"relay-a"`, "archive.node is not set", `archive.node = "relay-a"`}},
		{"a chain without a name takes one", "", "relay-b", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := writeChain(t, tt.written, 2)
			before := mustRead(f.dir, segName(2))
			a, err := Open(Options{Dir: f.dir, PublicKey: f.pub, Now: f.clock, Node: tt.opened})
			if tt.refused != nil {
				if !errors.Is(err, errOtherNode) {
					t.Fatalf("opened: %v", err)
				}
				for _, w := range tt.refused {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("the refusal does not say %s: %v", w, err)
					}
				}
				if !bytes.Equal(before, mustRead(f.dir, segName(2))) {
					t.Error("the refused relay wrote into the chain")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			writeMessages(t, f, a, 10, 11)
			a.Close()
			if got, _ := ChainNode(f.dir); got != tt.opened {
				t.Errorf("the chain names node %q, want %q", got, tt.opened)
			}
			if rep, err := VerifyWith(f.dir, io.Discard, VerifyOptions{}); err != nil || rep.Node != tt.opened {
				t.Errorf("verify: %v, node %q", err, rep.Node)
			}
		})
	}
}

// TestVerifyFindsAnotherNodesRecords: records of two nodes in one chain
// (a relay without the check on a named chain) fail verification, naming
// both nodes.
func TestVerifyFindsAnotherNodesRecords(t *testing.T) {
	f := writeChain(t, "relay-a", 2)
	a, err := Open(Options{Dir: f.dir, PublicKey: f.pub, Now: f.clock, Node: "relay-a"})
	if err != nil {
		t.Fatal(err)
	}
	a.opts.Node = "relay-b"
	writeMessages(t, f, a, 3, 3)
	a.Close()
	var out bytes.Buffer
	_, err = VerifyWith(f.dir, &out, VerifyOptions{})
	if err == nil || !strings.Contains(out.String(), `names node "relay-b", the records before it node "relay-a"`) {
		t.Fatalf("verify: %v\n%s", err, out.String())
	}
}

// prenodeFixture copies testdata/prenode (a data_dir's archive, head file
// and private key written before records named a node) into a temporary
// data_dir.
func prenodeFixture(t *testing.T) (dataDir string) {
	t.Helper()
	dataDir = t.TempDir()
	src := filepath.Join("testdata", "prenode")
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dataDir, rel), 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dataDir, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dataDir
}

// TestArchiveFromBeforeNodes: an archive written before records named a
// node verifies and exports as it did, and a relay named now goes on with
// it; what was written before is left byte for byte.
func TestArchiveFromBeforeNodes(t *testing.T) {
	dataDir := prenodeFixture(t)
	dir := filepath.Join(dataDir, "archive")
	var out bytes.Buffer
	rep, err := VerifyWith(dir, &out, VerifyOptions{})
	if err != nil || !rep.EndChecked || rep.Node != "" || strings.Contains(out.String(), "node") {
		t.Fatalf("verify: %v\n%s", err, out.String())
	}
	priv, err := LoadPrivateKey(filepath.Join(dataDir, PrivateKeyFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	ex, err := ExportWith(context.Background(), dir, priv, filepath.Join(t.TempDir(), "out"), Filter{}, ExportOptions{VerifyAll: true})
	if err != nil || !ex.Verified || ex.Messages != 6 || ex.Refusals != 1 || ex.ConsentEvents != 1 {
		t.Fatalf("export: %v %+v", err, ex)
	}
	old := [][]byte{mustRead(dir, segName(1)), mustRead(dir, segName(2))}
	f := &fixture{dataDir: dataDir, dir: dir, pub: priv, now: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
	a, err := Open(Options{Dir: dir, PublicKey: f.pub, Now: f.clock, Node: "relay-a"})
	if err != nil {
		t.Fatal(err)
	}
	writeMessages(t, f, a, 20, 21)
	a.Close()
	if !bytes.Equal(old[0], mustRead(dir, segName(1))) || !bytes.HasPrefix(mustRead(dir, segName(2)), old[1]) {
		t.Error("the records written before were changed")
	}
	if rep, err := VerifyWith(dir, io.Discard, VerifyOptions{}); err != nil || rep.Node != "relay-a" || rep.Records != 16+5 {
		t.Errorf("verify after: %v %+v", err, rep)
	}
}

// TestOpenRefusesAnotherNodesChainAfterACrash: the other node's chain is
// refused before its torn tail is set aside, also when the crash tore the
// first record of a new segment (the node is then read from the segment
// before); its own node sets the tail aside and goes on.
func TestOpenRefusesAnotherNodesChainAfterACrash(t *testing.T) {
	for _, tt := range []struct {
		name string
		tear func(t *testing.T, f *fixture) string // returns the torn segment
	}{
		{"a torn tail", func(t *testing.T, f *fixture) string {
			return appendBytes(t, f.dir, segName(2), "SPR1\x00\x00\x00\x40{\"seq\"")
		}},
		{"the torn first record of a new segment", func(t *testing.T, f *fixture) string {
			a, err := Open(Options{Dir: f.dir, PublicKey: f.pub, Now: f.clock, Node: "relay-a"})
			if err != nil {
				t.Fatal(err)
			}
			a.CloseSegment(context.Background())
			a.Close()
			os.Remove(filepath.Join(f.dir, segName(3)))
			return appendBytes(t, f.dir, segName(3), "SPR1\x00\x00")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := writeChain(t, "relay-a", 2)
			torn := tt.tear(t, f)
			before := mustRead(f.dir, torn)
			if _, err := Open(Options{Dir: f.dir, PublicKey: f.pub, Now: f.clock, Node: "relay-b"}); !errors.Is(err, errOtherNode) {
				t.Fatalf("relay-b opened relay-a's chain: %v", err)
			}
			if _, err := os.Stat(filepath.Join(f.dir, "torn")); err == nil || !bytes.Equal(before, mustRead(f.dir, torn)) {
				t.Fatal("the refused relay set the torn tail aside")
			}
			a, err := Open(Options{Dir: f.dir, PublicKey: f.pub, Now: f.clock, Node: "relay-a"})
			if err != nil {
				t.Fatal(err)
			}
			a.Close()
			if rep, err := VerifyWith(f.dir, io.Discard, VerifyOptions{}); err != nil || rep.Node != "relay-a" {
				t.Errorf("after relay-a set the tail aside: %v", err)
			}
		})
	}
}

func appendBytes(t *testing.T, dir, seg, b string) string {
	t.Helper()
	file, err := os.OpenFile(filepath.Join(dir, seg), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if _, err := file.WriteString(b); err != nil {
		t.Fatal(err)
	}
	return seg
}

// TestChainNodeOfADamagedChain: damage in the newest segment does not hide
// the node its records before the damage name, so verify can report the
// damage by node rather than stop at it.
func TestChainNodeOfADamagedChain(t *testing.T) {
	f := writeChain(t, "relay-a", 4)
	seg := filepath.Join(f.dir, segName(2))
	raw, _ := os.ReadFile(seg)
	at := bytes.LastIndex(raw, []byte(recordMagic))
	raw[at] = 'X'
	os.WriteFile(seg, raw, 0o600)
	if node, err := ChainNode(f.dir); err != nil || node != "relay-a" {
		t.Errorf("node %q, %v", node, err)
	}
	os.WriteFile(seg, []byte("XPR1 not a record at all"), 0o600)
	if node, err := ChainNode(f.dir); err != nil || node != "relay-a" {
		t.Errorf("with the newest segment unreadable: node %q, %v", node, err)
	}
}
