package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sealpost/sealpost/internal/testutil"
)

// storeSection is [store] for a relay on the test's PostgreSQL database.
func storeSection(dbURL string) string { return fmt.Sprintf("[store]\npostgres = %q\n", dbURL) }

// withRole is dbURL with another role in it.
func withRole(dbURL, role string) string {
	u, _ := url.Parse(dbURL)
	u.User = url.User(role)
	return u.String()
}

func dbName(dbURL string) string {
	u, _ := url.Parse(dbURL)
	return strings.TrimPrefix(u.Path, "/")
}

// rcptReply is the relay's answer to RCPT TO:<to> after a login and MAIL
// FROM, as a mail client would get it: "250" or the code, enhanced code
// and text of a refusal.
func rcptReply(t testing.TB, r *Relay, to string) string {
	t.Helper()
	pem, err := os.ReadFile(r.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := smtp.DialStartTLS(r.Submission, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", User, Password)); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(From, nil); err != nil {
		t.Fatal(err)
	}
	err = c.Rcpt(to, nil)
	var se *smtp.SMTPError
	switch {
	case err == nil:
		return "250"
	case errors.As(err, &se):
		return fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)
	}
	t.Fatal(err)
	return ""
}

func runOK(t testing.TB, r *Relay, stdin string, args ...string) string {
	t.Helper()
	stdout, stderr, code := r.Run(t, stdin, args...)
	if code != 0 {
		t.Fatalf("sealpost %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

// TestTwoNodesOnePostgres: two relays share the registry and keyring in
// one PostgreSQL database, each logging in as a role that may only add to
// the history. A consent recorded on node A lets node B send; revoked on A,
// B refuses within a second; a key imported on A encrypts on B, and its
// revocation imported on A is honoured by B within a second. The history
// refuses UPDATE and DELETE: to the relay's role by its grants, to its
// owner by the triggers.
func TestTwoNodesOnePostgres(t *testing.T) {
	pg := testutil.StartPostgres(t)
	owner := pg.NewDatabase()
	db := dbName(owner)
	pg.Psql(db, "CREATE ROLE sealpost_relay LOGIN")
	relayURL := withRole(owner, "sealpost_relay")
	setup := func(r *Relay) {
		runOK(t, r, "", "store", "init", "--as", "postgres", "--grant", "sealpost_relay")
	}
	a := StartRelay(t, RelayOptions{Sections: storeSection(relayURL), Setup: setup})
	b := StartRelay(t, RelayOptions{Sections: storeSection(relayURL)})
	client := "anna@client.example"
	if got := rcptReply(t, b, client); !strings.HasPrefix(got, "550 5.7.1 ") {
		t.Fatalf("before any consent, B answered %q", got)
	}
	runOK(t, a, "", "consent", "add", client, "--evidence", "email consent form, chart 17", "--date", "2026-01-05")
	if got := rcptReply(t, b, client); got != "250" {
		t.Fatalf("consent recorded on A, B answered %q", got)
	}
	runOK(t, a, "", "consent", "revoke", client, "--reason", "asked by phone")
	revoked := time.Now()
	testutil.WaitWithin(t, time.Second, "B refusing the client whose consent A revoked", func() bool {
		return strings.Contains(rcptReply(t, b, client), "withdrew consent")
	})
	t.Logf("B refused %v after the revocation on A", time.Since(revoked))

	keyed := "bea@client.example"
	e, err := openpgp.NewEntity("Bea", "", keyed, &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "bea.asc")
	os.WriteFile(keyFile, testutil.ArmoredPublicKey(t, e), 0o600)
	runOK(t, a, "", "keys", "import", keyFile)
	if got := rcptReply(t, b, keyed); got != "250" {
		t.Fatalf("key imported on A, B answered %q", got)
	}
	if err := e.RevokeKey(packet.KeyCompromised, "lost laptop", nil); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(keyFile, testutil.ArmoredPublicKey(t, e), 0o600)
	runOK(t, a, "", "keys", "import", keyFile)
	revoked = time.Now()
	testutil.WaitWithin(t, time.Second, "B refusing the client whose key A revoked", func() bool {
		return strings.HasPrefix(rcptReply(t, b, keyed), "550 ")
	})
	t.Logf("B refused %v after the key's revocation on A", time.Since(revoked))

	for _, stmt := range []string{"UPDATE consent_events SET reason = 'forged'", "DELETE FROM consent_addresses", "TRUNCATE absences"} {
		err := pg.PsqlAs("sealpost_relay", db, stmt)
		if err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("%s as the relay's role: %v", stmt, err)
		}
		err = pg.PsqlAs("postgres", db, stmt)
		if err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s as the owner: %v", stmt, err)
		}
	}
	if out := runOK(t, b, "", "consent", "list", "--all"); !strings.Contains(out, client) || !strings.Contains(out, "revoked") {
		t.Errorf("B's consent list:\n%s", out)
	}
}

// TestPostgresStopped: with PostgreSQL stopped the relay cannot decide, and
// says so with 451 4.3.0 (never a 250 without a decision); started again,
// the same relay process decides and delivers.
func TestPostgresStopped(t *testing.T) {
	pg := testutil.StartPostgres(t)
	r := StartRelay(t, RelayOptions{Sections: storeSection(pg.NewDatabase())})
	client := "anna@client.example"
	runOK(t, r, "", "consent", "add", client, "--evidence", "email consent form, chart 17", "--date", "2026-01-05")
	if got := rcptReply(t, r, client); got != "250" {
		t.Fatalf("with consent: %q", got)
	}
	pg.Stop()
	for range 3 {
		if got := rcptReply(t, r, client); !strings.HasPrefix(got, "451 4.3.0 ") {
			t.Fatalf("PostgreSQL stopped, RCPT answered %q", got)
		}
	}
	if out, ok := Swaks(t, r.SwaksArgs("--to", client, "--body", "See you on Tuesday.")...); ok || !strings.Contains(out, "451 4.3.0") {
		t.Fatalf("PostgreSQL stopped, a whole message:\n%s", out)
	}
	pg.Start()
	testutil.WaitWithin(t, 30*time.Second, "the relay deciding again", func() bool { return rcptReply(t, r, client) == "250" })
	if out, ok := Swaks(t, r.SwaksArgs("--to", client, "--body", "See you on Tuesday.")...); !ok {
		t.Fatalf("PostgreSQL back, the message was refused:\n%s", out)
	}
	testutil.WaitWithin(t, 30*time.Second, "the message in the outbox", func() bool { return len(r.Outbox(t)) == 1 })
}

// TestStoreMigrateFromSQLite: a relay's SQLite registry and keyring copied
// into PostgreSQL with counts and hashes, the files left as they were; the
// relay on PostgreSQL then decides as before, and a second copy into the
// now filled database is refused.
func TestStoreMigrateFromSQLite(t *testing.T) {
	pg := testutil.StartPostgres(t)
	r := StartRelay(t, RelayOptions{})
	runOK(t, r, "", "consent", "add", "anna@client.example", "--evidence", "form, chart 17", "--date", "2026-01-05", "--name", "Chart 17")
	runOK(t, r, "", "consent", "add", "carl@client.example", "--evidence", "form, chart 18", "--date", "2026-01-05")
	runOK(t, r, "", "consent", "revoke", "carl@client.example", "--reason", "by phone")
	runOK(t, r, "", "consent", "add", "--kind", "professional", "--domain", "clinic.example", "--evidence", "BAA 2026", "--date", "2026-01-05")
	e := testutil.OpenPGPKey(t, "Bea", "bea@client.example")
	keyFile := filepath.Join(t.TempDir(), "bea.asc")
	os.WriteFile(keyFile, testutil.ArmoredPublicKey(t, e), 0o600)
	runOK(t, r, "", "keys", "import", keyFile)
	listBefore := runOK(t, r, "", "consent", "list", "--all", "--json")
	keysBefore := runOK(t, r, "", "keys", "list", "--json")
	r.Stop(t)
	files := []string{filepath.Join(r.DataDir, "registry.db"), filepath.Join(r.DataDir, "keyring.db")}
	before := fileSums(t, files)

	cfg, _ := os.ReadFile(r.Config)
	os.WriteFile(r.Config, append(cfg, []byte("\n"+storeSection(pg.NewDatabase()))...), 0o600)
	// Before the copy the database lacks the events the archive recorded:
	// the relay does not start on it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	serve, err := exec.CommandContext(ctx, r.bin, "serve", "-c", r.Config).CombinedOutput()
	if err == nil || !strings.Contains(string(serve), "store migrate --from sqlite") {
		t.Fatalf("serve on an empty PostgreSQL with an archive of consent events: %v\n%s", err, serve)
	}
	out := runOK(t, r, "", "store", "migrate", "--from", "sqlite")
	for _, want := range []string{"consent_events", "consent_addresses", "professional_addresses", "keys", "SHA-256", "passphrase.key"} {
		if !strings.Contains(out, want) {
			t.Errorf("migrate's report lacks %q:\n%s", want, out)
		}
	}
	if after := fileSums(t, files); after != before {
		t.Fatal("migrate changed the SQLite files")
	}
	if got := runOK(t, r, "", "consent", "list", "--all", "--json"); got != listBefore {
		t.Errorf("consent list on PostgreSQL:\n%s\nwant, as on SQLite:\n%s", got, listBefore)
	}
	if got := runOK(t, r, "", "keys", "list", "--json"); got != keysBefore {
		t.Errorf("keys list on PostgreSQL:\n%s\nwant, as on SQLite:\n%s", got, keysBefore)
	}
	r.Start(t)
	for rcpt, want := range map[string]string{"anna@client.example": "250", "bea@client.example": "250", "x@clinic.example": "250",
		"carl@client.example": "550 5.7.1 ", "nobody@client.example": "550 5.7.1 "} {
		if got := rcptReply(t, r, rcpt); !strings.HasPrefix(got, want) {
			t.Errorf("%s on PostgreSQL: %q, want %q", rcpt, got, want)
		}
	}
	stdout, stderr, code := r.Run(t, "", "store", "migrate", "--from", "sqlite")
	if code == 0 || !strings.Contains(stderr, "empty database only") {
		t.Fatalf("a second migrate: exit %d\n%s%s", code, stdout, stderr)
	}
}

// fileSums is the files' SHA-256 sums together.
func fileSums(t testing.TB, files []string) string {
	t.Helper()
	var b bytes.Buffer
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %x\n", filepath.Base(f), sha256.Sum256(data))
	}
	return b.String()
}
