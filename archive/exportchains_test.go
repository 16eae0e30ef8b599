package archive

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/record"
)

// twoNodes writes the chains of relays relay-a and relay-b, each with its
// own archive key as a relay's first start makes one: their messages
// alternate in time (a at even minutes, b at odd), both copy consent
// event 7 from the registry they share, b refuses one recipient. It
// returns the chains and the keys that open both.
func twoNodes(t *testing.T) (a, b *fixture, keys openpgp.EntityList) {
	t.Helper()
	ctx := context.Background()
	consent := record.ConsentEvent{ID: 7, Kind: "given", Client: "Chart 7", Addresses: []string{"anna@client.example"}, Signed: "2026-01-02",
		Evidence: "intake form", RecordedBy: "admin", RecordedAt: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)}
	for n, node := range []string{"relay-a", "relay-b"} {
		f := newFixture(t)
		f.advance(time.Duration(n) * time.Minute)
		ar, err := Open(Options{Dir: f.dir, PublicKey: f.pub, Now: f.clock, Node: node})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 4 {
			client := []string{"anna@client.example", "bob@client.example"}[i%2]
			m, body := testMessage(10*n+i, client)
			m.Time = f.clock()
			if err := ar.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
				t.Fatal(err)
			}
			ar.RecordEvent(ctx, Event{MessageID: m.ID, Time: m.Time, Kind: Delivered, Recipients: []string{client}, Reply: "250 2.0.0 Ok"})
			if i == 1 {
				ar.CloseSegment(ctx)
			}
			f.advance(2 * time.Minute)
		}
		if err := ar.RecordConsent(ctx, consent); err != nil {
			t.Fatal(err)
		}
		if node == "relay-a" {
			if err := ar.RecordActivity(ctx, Activity{Time: f.clock(), Who: "admin", Role: "admin", What: "consent-recorded", Object: "7"}); err != nil {
				t.Fatal(err)
			}
		}
		if node == "relay-b" {
			ar.RecordRefusal(ctx, RefusalRecord{Time: f.clock(), Account: "therapist", Recipient: "carl@client.example", Reason: "no consent", Ref: "R7K2QX", Code: "no-consent"})
		}
		ar.Close()
		keys = append(keys, f.priv...)
		if n == 0 {
			a = f
		} else {
			b = f
		}
	}
	return a, b, keys
}

type chainsManifest struct {
	Archive struct {
		ChainHead string   `json:"chain_head"`
		Verified  bool     `json:"verified"`
		Checked   bool     `json:"records_checked"`
		Problems  []string `json:"problems"`
	} `json:"archive"`
	Chains []struct {
		Node        string `json:"node"`
		Seq         uint64 `json:"chain_head_seq"`
		Head        string `json:"chain_head"`
		Verified    bool   `json:"verified"`
		Checked     bool   `json:"records_checked"`
		Fingerprint string `json:"seal_key_fingerprint"`
	} `json:"chains"`
	Messages []struct {
		ID   string    `json:"id"`
		Node string    `json:"node"`
		Time time.Time `json:"time"`
		File string    `json:"file"`
	} `json:"messages"`
	Refusals []struct {
		Ref  string `json:"ref"`
		Node string `json:"node"`
	} `json:"refusals"`
	Consent []struct {
		ID int64 `json:"id"`
	} `json:"consent_history"`
	Activity []struct {
		What string `json:"what"`
		Node string `json:"node"`
	} `json:"activity"`
}

func readChainsManifest(t *testing.T, out string) chainsManifest {
	t.Helper()
	var m chainsManifest
	b, err := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestExportChainsMerges: two relays' chains in one export, merged by
// time, each message naming its node and keeping its id; each chain
// checked on its own with its head; the consent both copied listed once;
// SHA256SUMS signed by both seal keys, which gpg checks.
func TestExportChainsMerges(t *testing.T) {
	testutil.RequireTools(t, "gpg", "sha256sum")
	a, b, keys := twoNodes(t)
	ctx := context.Background()
	for _, verifyAll := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "export")
		rep, err := ExportChains(ctx, []Chain{{Dir: b.dir}, {Dir: a.dir}}, keys, out, Filter{}, ExportOptions{VerifyAll: verifyAll, Location: time.UTC})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Messages != 8 || rep.Refusals != 1 || rep.ConsentEvents != 1 || !rep.RecordsChecked || rep.Verified != verifyAll || len(rep.Chains) != 2 {
			t.Fatalf("verify all %v: report %+v", verifyAll, rep)
		}
		m := readChainsManifest(t, out)
		var nodes []string
		for i, mm := range m.Messages {
			nodes = append(nodes, mm.Node)
			if i > 0 && mm.Time.Before(m.Messages[i-1].Time) {
				t.Errorf("message %s (%s) listed after a later one", mm.ID, mm.Time)
			}
			if _, err := os.Stat(filepath.Join(out, mm.File)); err != nil || mm.File != "messages/"+mm.ID+".eml" {
				t.Errorf("message %s: file %s: %v", mm.ID, mm.File, err)
			}
		}
		if want := []string{"relay-a", "relay-b", "relay-a", "relay-b", "relay-a", "relay-b", "relay-a", "relay-b"}; !slices.Equal(nodes, want) {
			t.Errorf("messages' nodes in the manifest's order: %v, want %v", nodes, want)
		}
		if len(m.Chains) != 2 || m.Chains[0].Node != "relay-b" || m.Chains[1].Node != "relay-a" || m.Archive.ChainHead != "" {
			t.Fatalf("chains %+v, archive %+v", m.Chains, m.Archive)
		}
		for i, f := range []*fixture{b, a} {
			vr, err := VerifyWith(f.dir, nil, VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			c := m.Chains[i]
			fp, _ := SealKeyFingerprint(f.dir)
			if c.Seq != vr.HeadSeq || c.Head != vr.Head || !c.Checked || c.Verified != verifyAll || c.Fingerprint != fp {
				t.Errorf("chain %s in the manifest: %+v, verify says %d:%s", c.Node, c, vr.HeadSeq, vr.Head)
			}
		}
		if len(m.Consent) != 1 || len(m.Refusals) != 1 || m.Refusals[0].Node != "relay-b" || len(m.Activity) != 1 || m.Activity[0].Node != "relay-a" {
			t.Errorf("consent history %+v, refusals %+v, activity %+v", m.Consent, m.Refusals, m.Activity)
		}
		page, _ := os.ReadFile(filepath.Join(out, "index.html"))
		if !strings.Contains(string(page), "<dt>Node relay-a</dt>") || strings.Index(string(page), "msg-msg0000") > strings.Index(string(page), "msg-msg0010") {
			t.Error("index.html names no node, or lists relay-b's first message before relay-a's earlier one")
		}
		for _, f := range []string{"seal-relay-a.pub", "seal-relay-b.pub"} {
			if _, err := os.Stat(filepath.Join(out, f)); err != nil {
				t.Error(err)
			}
		}
		home := t.TempDir()
		if o, ok := gpgIn(t, home, out, "--import", "seal-key.asc"); !ok || strings.Count(o, "imported") < 2 {
			t.Fatalf("gpg --import seal-key.asc:\n%s", o)
		}
		o, ok := gpgIn(t, home, out, "--verify", "SHA256SUMS.asc", "SHA256SUMS")
		if !ok || strings.Count(o, "Good signature") != 2 {
			t.Fatalf("gpg --verify SHA256SUMS.asc SHA256SUMS, one good signature per chain wanted:\n%s", o)
		}
		for _, c := range m.Chains {
			if !strings.Contains(o, strings.ReplaceAll(c.Fingerprint, " ", "")) {
				t.Errorf("no signature by node %s's seal key %s:\n%s", c.Node, c.Fingerprint, o)
			}
		}
		check := exec.Command("sha256sum", "-c", "--strict", "SHA256SUMS")
		check.Dir = out
		if o, err := check.CombinedOutput(); err != nil {
			t.Fatalf("sha256sum -c: %v\n%s", err, o)
		}
	}
}

// TestExportChainsOfOneClient: a client's export holds what both nodes
// sent them.
func TestExportChainsOfOneClient(t *testing.T) {
	a, b, keys := twoNodes(t)
	out := filepath.Join(t.TempDir(), "export")
	rep, err := ExportChains(context.Background(), []Chain{{Dir: a.dir}, {Dir: b.dir}}, keys, out, Filter{Clients: []string{"anna@client.example"}}, ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := readChainsManifest(t, out)
	var ids []string
	for _, mm := range m.Messages {
		ids = append(ids, mm.Node+"/"+mm.ID)
	}
	if want := []string{"relay-a/msg0000", "relay-b/msg0010", "relay-a/msg0002", "relay-b/msg0012"}; rep.Messages != 4 || !slices.Equal(ids, want) {
		t.Errorf("anna's export holds %v, want %v", ids, want)
	}
}

// TestExportChainsOfNothing: chains with nothing selected give an export
// whose lists are empty, not missing.
func TestExportChainsOfNothing(t *testing.T) {
	a, b, keys := twoNodes(t)
	out := filepath.Join(t.TempDir(), "export")
	if _, err := ExportChains(context.Background(), []Chain{{Dir: a.dir}, {Dir: b.dir}}, keys, out, Filter{Clients: []string{"nobody@client.example"}}, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	b2, _ := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err := json.Unmarshal(b2, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"messages", "refusals", "consent_history", "evidence", "activity", "chains"} {
		if _, ok := m[k].([]any); !ok {
			t.Errorf("%s is %v, want a list", k, m[k])
		}
	}
}

// TestExportChainsRefusesOneArchiveTwice: the same chain twice, or two
// copies of one data_dir named differently since, are refused before
// anything is written.
func TestExportChainsRefusesOneArchiveTwice(t *testing.T) {
	a, _, keys := twoNodes(t)
	copied := copyArchive(t, a.dir)
	// The copy's relay named itself relay-c, as a mistaken second server
	// whose chain had no name would.
	for _, tt := range []struct {
		name   string
		chains []Chain
		want   string
	}{
		{"the same folder twice", []Chain{{Dir: a.dir}, {Dir: a.dir}}, "both hold the chain of node relay-a"},
		{"a copy", []Chain{{Dir: a.dir}, {Dir: copied}}, "both hold the chain of node relay-a"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "export")
			_, err := ExportChains(context.Background(), tt.chains, keys, out, Filter{}, ExportOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("export: %v", err)
			}
			if ents, _ := os.ReadDir(out); len(ents) > 0 {
				t.Errorf("the refused export wrote %d files", len(ents))
			}
		})
	}
	problems, err := CrossCheck([]Chain{{Dir: a.dir}, {Dir: copied}})
	if err != nil || len(problems) != 2 || !strings.Contains(problems[1], "started as one archive (the same seal key)") {
		t.Errorf("cross check of a copy: %v %q", err, problems)
	}
}

// TestFindChains: a folder of node folders, each an archive folder with
// its head file beside it or a data_dir's layout, is found as its chains.
func TestFindChains(t *testing.T) {
	a, b, _ := twoNodes(t)
	root := t.TempDir()
	os.Rename(a.dataDir, filepath.Join(root, "relay-a")) // data_dir layout: relay-a/archive, relay-a/archive-head
	os.Rename(b.dir, filepath.Join(root, "relay-b"))     // archive folder: relay-b, relay-b-head
	os.Rename(HeadFile(b.dir), filepath.Join(root, "relay-b-head"))
	chains, err := FindChains(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []Chain{{Dir: filepath.Join(root, "relay-a", "archive")}, {Dir: filepath.Join(root, "relay-b")}}
	if !slices.Equal(chains, want) {
		t.Fatalf("chains %v, want %v", chains, want)
	}
	for _, c := range chains {
		if rep, err := VerifyWith(c.Dir, nil, VerifyOptions{}); err != nil || !rep.EndChecked {
			t.Errorf("%s: %v (its head file beside it: %v)", c.Dir, err, rep.EndChecked)
		}
	}
	if one, err := FindChains(chains[1].Dir); err != nil || !slices.Equal(one, chains[1:]) {
		t.Errorf("an archive folder is its own chain: %v %v", one, err)
	}
	if _, err := FindChains(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not an archive folder") {
		t.Errorf("an empty folder: %v", err)
	}
}
