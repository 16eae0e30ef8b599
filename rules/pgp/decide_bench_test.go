package pgp

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/rules"
)

// BenchmarkDecideRCPT is the decision the relay makes at every RCPT, with
// the registry (10,000 clients' consents) and the keyring (200 keys) in
// SQLite and in PostgreSQL on loopback: a recipient with a key, one with
// consent, one refused, in turn. "paced" asks 200 times a second, as 200
// messages a second would; p50 and p99 are each decision's time. With
// PostgreSQL, a bare SELECT 1 to the same server is asked 200 times a
// second too, each half-way between two decisions (floor-p50, floor-p99):
// the round trip the machine allows at that moment, so a loaded machine's
// tail can be told from sealpost's cost (a key holder's decision is one
// round trip, any other two). load1 is the load average as it ended.
func BenchmarkDecideRCPT(b *testing.B) {
	ctx := context.Background()
	pg := testutil.StartPostgres(b)
	floorDB := mustOpen(b, pg.URL("postgres"))
	defer floorDB.Close()
	selectOne := func() error { return floorDB.QueryRowContext(ctx, "SELECT 1").Scan(new(int)) }
	recipients := []string{"k0042@client.example", "c04242@client.example", "nobody@client.example"}
	for _, backend := range []string{"sqlite", "postgres"} {
		policy := decisionPolicy(b, backend, pg)
		i := 0
		decide := func() error {
			i++
			d, err := policy.Decide(ctx, "therapist", recipients[i%len(recipients)])
			if err == nil && d.Protection == "" {
				err = fmt.Errorf("%s: no decision", recipients[i%len(recipients)])
			}
			return err
		}
		var floor func() error
		if backend == "postgres" {
			floor = selectOne
		}
		b.Run(backend+"/unpaced", func(b *testing.B) { paced(b, 0, decide, nil) })
		b.Run(backend+"/paced-200-per-s", func(b *testing.B) { paced(b, time.Second/200, decide, floor) })
	}
	b.Run("postgres/round-trip-paced-200-per-s", func(b *testing.B) { paced(b, time.Second/200, selectOne, nil) })
}

// paced runs op b.N times, pace apart (0: back to back), and reports the
// median and 99th percentile of its time. floor, when set, runs half-way
// between two ops, and its times are reported as floor-p50 and floor-p99.
func paced(b *testing.B, pace time.Duration, op, floor func() error) {
	var took, floorTook []time.Duration
	timed := func(f func() error, into *[]time.Duration) {
		start := time.Now()
		err := f()
		*into = append(*into, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
	}
	next := time.Now()
	for b.Loop() {
		if pace > 0 {
			time.Sleep(time.Until(next)) // the arrival rate under test, not a wait for a result
			next = next.Add(pace)
		}
		timed(op, &took)
		if floor != nil {
			time.Sleep(time.Until(next.Add(-pace / 2)))
			timed(floor, &floorTook)
		}
	}
	reportPercentiles(b, took, "")
	if floor != nil {
		reportPercentiles(b, floorTook, "floor-")
	}
	if load, err := os.ReadFile("/proc/loadavg"); err == nil {
		if l1, err := strconv.ParseFloat(strings.Fields(string(load))[0], 64); err == nil {
			b.ReportMetric(l1, "load1")
		}
	}
}

func reportPercentiles(b *testing.B, took []time.Duration, prefix string) {
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds()), prefix+"p50-µs")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), prefix+"p99-µs")
}

func decisionPolicy(b *testing.B, backend string, pg *testutil.Postgres) *rules.Policy {
	ctx := context.Background()
	var reg *rules.Registry
	var keys *Keyring
	var err error
	if backend == "sqlite" {
		dir := b.TempDir()
		if reg, err = rules.OpenRegistry(filepath.Join(dir, "registry.db")); err == nil {
			keys, err = OpenKeyring(filepath.Join(dir, "keyring.db"), KeyringOptions{})
		}
	} else {
		url := pg.NewDatabase()
		var regDB, keyDB = mustOpen(b, url), mustOpen(b, url)
		if reg, err = rules.OpenRegistryPostgres(regDB, b.TempDir()); err == nil {
			keys, err = OpenKeyringPostgres(keyDB, KeyringOptions{})
		}
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { reg.Close(); keys.Close() })
	var csv strings.Builder
	csv.WriteString("address,name,signed,evidence,expires\n")
	for i := range 10000 {
		fmt.Fprintf(&csv, "c%05d@client.example,Client %d,2026-01-02,intake form,\n", i, i)
	}
	if _, err := reg.Import(ctx, strings.NewReader(csv.String()), "bench"); err != nil {
		b.Fatal(err)
	}
	for i := range 200 {
		e := newKey(b, fmt.Sprintf("k%04d@client.example", i), time.Now().AddDate(-1, 0, 0), 0)
		if _, err := keys.Import(ctx, bytes.NewReader(armored(b, e)), "bench"); err != nil {
			b.Fatal(err)
		}
	}
	policy, err := rules.NewPolicy(rules.PolicyConfig{InternalDomains: []string{"practice.example"}, Notice: "Confidential.",
		Registry: reg, Keys: keys, Encrypter: NewEncrypter(keys, nil)})
	if err != nil {
		b.Fatal(err)
	}
	return policy
}

func mustOpen(b *testing.B, url string) *sql.DB {
	db, err := store.OpenPostgres(store.Postgres{URL: url})
	if err != nil {
		b.Fatal(err)
	}
	return db
}
