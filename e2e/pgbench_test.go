package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// pgBench is BenchmarkVersusPostfix's relay for the "PostgreSQL store"
// row: the same relay with its registry and keyring in a private
// PostgreSQL on this machine, reached as production reaches it: a role
// that may only add to the history, its password from a file, TLS with
// the server's certificate verified against the practice's CA.
type pgBench struct {
	r       *Relay
	pg      *testutil.Postgres
	db      string
	counted int64 // the database's committed transactions at the last report
}

// pgRow is the row BenchmarkVersusPostfix runs on pgBench's relay.
const pgRow = "4 KB, notice + archive, PostgreSQL store"

func startPGBench(b *testing.B, sink *Sink) *pgBench {
	b.Helper()
	pki := testutil.NewPKI(b)
	s := &pgBench{pg: testutil.StartPostgresTLS(b, pki)}
	s.db = dbName(s.pg.NewDatabase())
	s.pg.Psql(s.db, "CREATE ROLE sealpost_relay LOGIN PASSWORD 'bench relay secret'")
	pw := filepath.Join(b.TempDir(), "postgres-password")
	if err := os.WriteFile(pw, []byte("bench relay secret\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	section := fmt.Sprintf("[store]\npostgres = %q\npassword_file = %q\nca_file = %q\n",
		fmt.Sprintf("postgres://sealpost_relay@localhost:%d/%s", s.pg.Port, s.db), pw, pki.CAFile)
	s.r = StartRelay(b, RelayOptions{Sink: sink, Quiet: true, Sections: section, Setup: func(r *Relay) {
		runOK(b, r, "", "store", "init", "--as", "postgres", "--grant", "sealpost_relay")
		runOK(b, r, "", "consent", "add", "anna@client.example", "--evidence", "email consent form, chart 17", "--date", "2026-01-05")
		runOK(b, r, "orchard lantern sixty blue\n", "consent", "passphrase", "sealed@client.example", "--name", "Bench Client")
	}})
	var ssl string
	testutil.WaitWithin(b, 10*time.Second, "the relay's connection to PostgreSQL", func() bool {
		ssl = s.query(b, "SELECT string_agg(DISTINCT ssl::text, ',') FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE usename = 'sealpost_relay'")
		return ssl != ""
	})
	if ssl != "true" {
		b.Fatalf("the relay's connections to PostgreSQL over TLS: %q", ssl)
	}
	s.counted = s.transactions(b)
	return s
}

// reportTransactions says how many transactions the relay committed per
// message since the last report: what the row asks PostgreSQL for (the
// logins' and decisions' reads). PostgreSQL publishes a connection's
// counts when it has been idle a while, so a run's figure can include
// some of the one before.
func (s *pgBench) reportTransactions(b *testing.B, run, messages int) {
	b.Helper()
	n := s.transactions(b)
	fmt.Fprintf(os.Stderr, "run %d, PostgreSQL store: %.2f transactions per message\n", run+1, float64(n-s.counted)/float64(messages))
	s.counted = n
}

// transactions is how many transactions the relay's database has
// committed: said per message after each run, it shows what the row asks
// PostgreSQL for (the sessions' and decisions' reads).
func (s *pgBench) transactions(b *testing.B) int64 {
	b.Helper()
	n, err := strconv.ParseInt(s.query(b, fmt.Sprintf("SELECT xact_commit FROM pg_stat_database WHERE datname = '%s'", s.db)), 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

func (s *pgBench) query(b *testing.B, q string) string {
	b.Helper()
	out, err := exec.Command("psql", "-X", "-A", "-t", "-h", "127.0.0.1", "-p", strconv.Itoa(s.pg.Port), "-U", "postgres", "-d", s.db, "-c", q).CombinedOutput()
	if err != nil {
		b.Fatalf("psql %s: %v: %s", q, err, out)
	}
	return strings.TrimSpace(string(out))
}
