package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// nodeSections is a relay's configuration as node name of a group
// practice on the PostgreSQL database dbURL.
func nodeSections(dbURL, name string) string {
	return storeSection(dbURL) + "[archive]\nnode = \"" + name + "\"\n"
}

// providerCounts is how often each Message-ID (its part before the @) of
// the load reached the provider.
func providerCounts(t *testing.T, p *Postfix) map[string]int {
	seen := map[string]int{}
	for _, m := range p.Sink.Messages(t) {
		if i := strings.Index(m.Data, "Message-ID: <"); i >= 0 {
			id := m.Data[i+len("Message-ID: <"):]
			seen[id[:strings.IndexByte(id, '@')]]++
		}
	}
	return seen
}

// nodesManifest is what TestTwoNodesKillOne reads of an export of both
// nodes' chains.
type nodesManifest struct {
	Archive struct {
		Verified bool `json:"verified"`
	} `json:"archive"`
	Chains []struct {
		Node     string `json:"node"`
		Verified bool   `json:"verified"`
	} `json:"chains"`
	Messages []struct {
		Node       string `json:"node"`
		MessageID  string `json:"message_id"`
		Recipients []struct {
			Delivery []struct {
				Status string `json:"status"`
			} `json:"delivery"`
		} `json:"recipients"`
	} `json:"messages"`
}

// TestTwoNodesKillOne: two relays of one practice on one PostgreSQL, each
// with its own spool and archive chain, delivering to one Postfix. Node A
// is killed (SIGKILL) in the middle of a burst through both; node B
// answers every submission 250 before, during and after. A restarted
// delivers everything it answered 250 to: at the provider nothing is
// missing, B's messages arrive exactly once, and A's more than once only
// if A was handing them over when it died (delivery is at least once).
// An auditor's copy of both chains verifies, node by node, and one export
// of both holds every message answered 250, each once and in its node's
// chain.
func TestTwoNodesKillOne(t *testing.T) {
	testutil.RequireTools(t, "sha256sum")
	pg := testutil.StartPostgres(t)
	db := pg.NewDatabase()
	p := StartPostfix(t, PostfixOptions{SASL: true})
	a := StartRelay(t, RelayOptions{Upstream: p, Sections: nodeSections(db, "relay-a")})
	b := StartRelay(t, RelayOptions{Upstream: p, Sections: nodeSections(db, "relay-b")})
	load := func(r *Relay, prefix string) *Load {
		return &Load{Addr: r.Submission, CAFile: r.CA, User: User, Pass: Password, From: From,
			To: "colleague@practice.example", Sessions: 4, PerSession: 10, Prefix: prefix}
	}
	loadA, loadB := load(a, "node-a"), load(b, "node-b")
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopA()
	defer stopB()
	doneA, doneB := make(chan struct{}), make(chan struct{})
	go func() { loadA.Run(ctxA, 0); close(doneA) }()
	go func() { loadB.Run(ctxB, 0); close(doneB) }()

	testutil.WaitWithin(t, 60*time.Second, "both nodes accepting", func() bool { return len(loadA.Acked()) >= 60 && len(loadB.Acked()) >= 30 })
	a.Kill(t)
	killed := time.Now()
	bAtKill := len(loadB.Acked())
	testutil.WaitWithin(t, 60*time.Second, "B accepting while A is down", func() bool { return len(loadB.Acked()) >= bAtKill+60 })
	stopA()
	<-doneA
	stopB()
	<-doneB
	t.Logf("A killed after %d messages answered 250; B answered %d more in the %v A was down",
		len(loadA.Acked()), len(loadB.Acked())-bAtKill, time.Since(killed).Round(time.Millisecond))
	if errs := loadB.Errors(); len(errs) > 0 {
		t.Errorf("B refused or failed submissions while A was killed: %v", errs)
	}
	a.Start(t)

	ackedA, ackedB := loadA.Acked(), loadB.Acked()
	var missing []string
	var seen map[string]int
	testutil.WaitWithin(t, 120*time.Second, "every message answered 250 at the provider", func() bool {
		seen = providerCounts(t, p)
		missing = missing[:0]
		for _, id := range append(append([]string(nil), ackedA...), ackedB...) {
			if seen[id] == 0 {
				missing = append(missing, id)
			}
		}
		return len(missing) == 0
	})
	dupsA := 0
	for _, id := range ackedA {
		dupsA += seen[id] - 1
	}
	for _, id := range ackedB {
		if seen[id] != 1 {
			t.Errorf("B's message %s reached the provider %d times", id, seen[id])
		}
	}
	if dupsA > loadA.Sessions+4 {
		t.Errorf("%d of A's messages delivered twice: more than could be in flight at the kill", dupsA)
	}
	t.Logf("A: %d answered 250, all delivered, %d twice (in flight at the kill); B: %d answered 250, each delivered once",
		len(ackedA), dupsA, len(ackedB))

	a.Stop(t)
	b.Stop(t)
	auditor := t.TempDir()
	for _, r := range []*Relay{a, b} {
		name := "relay-a"
		if r == b {
			name = "relay-b"
		}
		copyTree(t, r.DataDir, filepath.Join(auditor, "copies", name), "archive", "archive-head")
	}
	stdout, stderr, code := auditorRun(t, auditor, "archive", "verify", "--archive", "copies")
	if code != 0 || !strings.Contains(stdout, "relay-a: The chain verifies") || !strings.Contains(stdout, "relay-b: The chain verifies") ||
		!strings.Contains(stdout, "Every chain verifies: 2 nodes (relay-a, relay-b).") {
		t.Fatalf("verify of both nodes' copies: exit %d\n%s%s", code, stdout, stderr)
	}
	stdout, stderr, code = auditorRun(t, auditor, "archive", "export", "--verify", "--archive", "copies", "--out", "export",
		"--key", filepath.Join(a.DataDir, "archive-private-key.asc"), "--key", filepath.Join(b.DataDir, "archive-private-key.asc"))
	if code != 0 {
		t.Fatalf("export of both nodes: exit %d\n%s%s", code, stdout, stderr)
	}
	checkNodesExport(t, filepath.Join(auditor, "export"), ackedA, ackedB)
}

// checkNodesExport: both chains verified in the export, and every message
// answered 250 is in it once (a record not marked aborted), in its node's
// chain.
func checkNodesExport(t *testing.T, out string, ackedA, ackedB []string) {
	t.Helper()
	check := exec.Command("sha256sum", "-c", "--quiet", "SHA256SUMS")
	check.Dir = out
	if o, err := check.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, o)
	}
	var m nodesManifest
	b, err := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if !m.Archive.Verified || len(m.Chains) != 2 || m.Chains[0].Node != "relay-a" || m.Chains[1].Node != "relay-b" {
		t.Fatalf("manifest: archive %+v, chains %+v", m.Archive, m.Chains)
	}
	live := map[string]string{} // Message-ID -> node
	count := map[string]int{}
	for _, msg := range m.Messages {
		aborted := false
		for _, d := range msg.Recipients[0].Delivery {
			aborted = aborted || d.Status == "aborted"
		}
		if !aborted {
			id := strings.TrimSuffix(msg.MessageID, "@load.test")
			live[id] = msg.Node
			count[id]++
		}
	}
	for node, ids := range map[string][]string{"relay-a": ackedA, "relay-b": ackedB} {
		for _, id := range ids {
			if count[id] != 1 || live[id] != node {
				t.Errorf("message %s answered 250 by %s: %d live records in the export, node %q", id, node, count[id], live[id])
			}
		}
	}
}

// TestCopiedDataDirRefused: a relay started on another node's data_dir
// (copied to the second server with its configuration changed) refuses to
// start, and says what happened; its own name brings it back.
func TestCopiedDataDirRefused(t *testing.T) {
	r := StartRelay(t, RelayOptions{Sections: "[archive]\nnode = \"relay-a\"\n"})
	if out, ok := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example", "--body", "Team meeting moved.")...); !ok {
		t.Fatalf("a message to a colleague:\n%s", out)
	}
	r.Stop(t)
	cfg, _ := os.ReadFile(r.Config)
	os.WriteFile(r.Config, []byte(strings.Replace(string(cfg), `node = "relay-a"`, `node = "relay-b"`, 1)), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, Sealpost(t), "serve", "-c", r.Config).CombinedOutput()
	if err == nil || ctx.Err() != nil || !strings.Contains(string(out), `is the chain of the relay named "relay-a", but archive.node is "relay-b" here`) ||
		!strings.Contains(string(out), "data_dir of its own") {
		t.Fatalf("serve on relay-a's data_dir as relay-b: %v\n%s", err, out)
	}
	os.WriteFile(r.Config, cfg, 0o600)
	r.Start(t)
}
