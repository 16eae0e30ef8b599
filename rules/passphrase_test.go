package rules

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/record"
)

const (
	annaPassphrase  = "violet harbor lantern quietly"
	annaReplacement = "seven orange kites over Lisbon"
)

func openTestRegistry(t *testing.T) (*Registry, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "registry.db")
	r, err := openRegistryAt(t, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, path
}

// filesHolding names the files in dir (the database, its WAL, the key)
// whose bytes hold s.
func filesHolding(t *testing.T, dir, s string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(s)) {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestPassphraseRoundTrip: set, read, replace and remove a client's
// passphrase; every step is an event with who and when and no secret, the
// secret is stored encrypted only, and a removal deletes it.
func TestPassphraseRoundTrip(t *testing.T) {
	r, path := openTestRegistry(t)
	ctx := context.Background()
	set, err := r.SetPassphrase(ctx, []string{"Anna <Anna@Client.example>", "anna.work@client.example"}, "Chart 7", annaPassphrase, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if set.Kind != record.PassphraseSet || set.RecordedBy != "admin" || set.RecordedAt.IsZero() || len(set.Addresses) != 2 || set.Addresses[0] != "anna@client.example" {
		t.Fatalf("event %+v", set)
	}
	for _, a := range []string{"anna@client.example", "ANNA.WORK@client.example"} {
		secret, ev, err := r.Passphrase(ctx, a)
		if err != nil || secret != annaPassphrase || ev == nil || ev.ID != set.ID {
			t.Fatalf("%s: %q %+v %v", a, secret, ev, err)
		}
		st, _ := r.Current(ctx, a, time.Now())
		if st.Passphrase == nil || st.Passphrase.ID != set.ID || st.State != ConsentNone {
			t.Fatalf("%s: standing %+v", a, st)
		}
	}
	if secret, ev, err := r.Passphrase(ctx, "other@client.example"); secret != "" || ev != nil || err != nil {
		t.Fatalf("nobody's: %q %v %v", secret, ev, err)
	}
	list, _ := r.List(ctx, false, time.Now())
	if len(list) != 2 || list[0].PassphraseSet.IsZero() || list[0].Client != "Chart 7" || list[0].State != ConsentNone {
		t.Fatalf("list %+v: a passphrase on file is listed", list)
	}

	replaced, err := r.SetPassphrase(ctx, []string{"anna@client.example"}, "Chart 7", annaReplacement, "reception")
	if err != nil {
		t.Fatal(err)
	}
	if secret, ev, _ := r.Passphrase(ctx, "anna@client.example"); secret != annaReplacement || ev.ID != replaced.ID {
		t.Fatalf("after the replacement: %q %+v", secret, ev)
	}
	removed, err := r.RemovePassphrase(ctx, []string{"anna@client.example", "anna.work@client.example"}, "admin")
	if err != nil || removed.Kind != record.PassphraseRemoved || removed.Client != "Chart 7" {
		t.Fatalf("remove: %+v %v", removed, err)
	}
	for _, a := range []string{"anna@client.example", "anna.work@client.example"} {
		if secret, ev, err := r.Passphrase(ctx, a); secret != "" || ev != nil || err != nil {
			t.Fatalf("%s after removal: %q %v %v", a, secret, ev, err)
		}
		if st, _ := r.Current(ctx, a, time.Now()); st.Passphrase != nil || st.PassphraseRemoved == nil || st.PassphraseRemoved.ID != removed.ID {
			t.Fatalf("%s: standing %+v", a, st)
		}
	}
	if _, err := r.RemovePassphrase(ctx, []string{"anna@client.example"}, "admin"); err == nil || !strings.Contains(err.Error(), "no passphrase on file") {
		t.Errorf("second removal: %v", err)
	}
	var n int
	r.db.QueryRow(`SELECT count(*) FROM passphrase_secrets`).Scan(&n)
	if n != 0 {
		t.Errorf("%d secrets left after the removal", n)
	}

	evs, _ := r.EventsSince(ctx, 0)
	kinds := []string{}
	for _, ev := range evs {
		kinds = append(kinds, ev.Kind+" "+strings.Join(ev.Addresses, ","))
	}
	if strings.Join(kinds, "; ") != "passphrase-set anna@client.example,anna.work@client.example; passphrase-set anna@client.example; "+
		"passphrase-removed anna@client.example,anna.work@client.example" {
		t.Fatalf("history %v", kinds)
	}
	j, _ := json.Marshal(evs)
	if bytes.Contains(j, []byte("harbor")) || bytes.Contains(j, []byte("kites")) {
		t.Fatal("the history holds a passphrase")
	}
	for _, stmt := range []string{"UPDATE passphrase_addresses SET address = 'x@y.example'", "DELETE FROM passphrase_addresses",
		"DELETE FROM consent_events WHERE kind = 'passphrase-set'"} {
		if _, err := r.db.Exec(stmt); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v; the history must not change", stmt, err)
		}
	}
	r.Close()
	if held := filesHolding(t, filepath.Dir(path), "harbor"); len(held) > 0 {
		t.Fatalf("%v hold a passphrase in clear", held)
	}
}

// TestPassphraseAtRest: the secret is readable only as the row of its own
// address and event, with the key it was stored with.
func TestPassphraseAtRest(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T) (*Registry, string, record.ConsentEvent, record.ConsentEvent) {
		r, path := openTestRegistry(t)
		a, err := r.SetPassphrase(ctx, []string{"anna@client.example"}, "Chart 7", annaPassphrase, "admin")
		if err != nil {
			t.Fatal(err)
		}
		b, err := r.SetPassphrase(ctx, []string{"bert@client.example"}, "Chart 8", annaReplacement, "admin")
		if err != nil {
			t.Fatal(err)
		}
		return r, path, a, b
	}
	tests := []struct {
		name   string
		tamper func(t *testing.T, r *Registry, path string, a, b record.ConsentEvent) *Registry
	}{
		{"ciphertext altered", func(t *testing.T, r *Registry, _ string, _, _ record.ConsentEvent) *Registry {
			// One bit flipped: setting a byte would change nothing once in
			// 256 runs, when the random ciphertext already had that value.
			var sealed []byte
			if err := r.db.QueryRow(`SELECT sealed FROM passphrase_secrets WHERE address = 'anna@client.example'`).Scan(&sealed); err != nil {
				t.Fatal(err)
			}
			sealed[20] ^= 0x01
			mustExec(t, r.db, `UPDATE passphrase_secrets SET sealed = ? WHERE address = 'anna@client.example'`, sealed)
			return r
		}},
		{"row moved to another client", func(t *testing.T, r *Registry, _ string, _, b record.ConsentEvent) *Registry {
			mustExec(t, r.db, `UPDATE passphrase_secrets SET sealed = (SELECT sealed FROM passphrase_secrets WHERE address = 'bert@client.example') WHERE address = 'anna@client.example'`)
			return r
		}},
		{"row relabelled with another event", func(t *testing.T, r *Registry, _ string, _, b record.ConsentEvent) *Registry {
			mustExec(t, r.db, `UPDATE passphrase_secrets SET event_id = ? WHERE address = 'anna@client.example'`, b.ID)
			return r
		}},
		{"secret missing", func(t *testing.T, r *Registry, _ string, _, _ record.ConsentEvent) *Registry {
			mustExec(t, r.db, `DELETE FROM passphrase_secrets WHERE address = 'anna@client.example'`)
			return r
		}},
		{"another key", func(t *testing.T, r *Registry, path string, _, _ record.ConsentEvent) *Registry {
			r.Close()
			os.WriteFile(filepath.Join(filepath.Dir(path), PassphraseKeyFile), []byte(strings.Repeat("ab", 32)+"\n"), 0o600)
			r2, err := OpenRegistry(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r2.Close() })
			return r2
		}},
		{"key file gone", func(t *testing.T, r *Registry, path string, _, _ record.ConsentEvent) *Registry {
			r.Close()
			os.Remove(filepath.Join(filepath.Dir(path), PassphraseKeyFile))
			r2, err := OpenRegistry(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r2.Close() })
			return r2
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, path, a, b := setup(t)
			r = tt.tamper(t, r, path, a, b)
			secret, _, err := r.Passphrase(ctx, "anna@client.example")
			if !errors.Is(err, ErrUnavailable) || secret != "" {
				t.Fatalf("%q, %v; want ErrUnavailable", secret, err)
			}
			for _, leak := range []string{"anna", "harbor", "kites"} {
				if strings.Contains(err.Error(), leak) {
					t.Fatalf("the error %q names %q", err, leak)
				}
			}
		})
	}
	t.Run("key file", func(t *testing.T) {
		_, path, _, _ := setup(t)
		fi, err := os.Stat(filepath.Join(filepath.Dir(path), PassphraseKeyFile))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("passphrase.key: %v %v; want 0600", fi.Mode(), err)
		}
	})
}

// TestLostKeyNotReplaced: with passphrases on file and passphrase.key
// gone (a restore that forgot it), setting another passphrase is refused
// with what to do, instead of a new key that would leave every stored
// passphrase unreadable; removing passphrases still works, and once none
// is left a new key is made.
func TestLostKeyNotReplaced(t *testing.T) {
	ctx := context.Background()
	r, path := openTestRegistry(t)
	if _, err := r.SetPassphrase(ctx, []string{"anna@client.example"}, "Chart 7", annaPassphrase, "admin"); err != nil {
		t.Fatal(err)
	}
	r.Close()
	keyFile := filepath.Join(filepath.Dir(path), PassphraseKeyFile)
	os.Remove(keyFile)
	r, err := OpenRegistry(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.CheckPassphraseKey(ctx); err == nil || !strings.Contains(err.Error(), "restore") {
		t.Errorf("CheckPassphraseKey (sealpost check) beside a lost key: %v; want the problem named", err)
	}
	_, err = r.SetPassphrase(ctx, []string{"bert@client.example"}, "Chart 8", annaReplacement, "admin")
	if err == nil || !strings.Contains(err.Error(), "restore") {
		t.Fatalf("setting a passphrase beside a lost key: %v; want a refusal that says to restore passphrase.key", err)
	}
	if _, err := os.Stat(keyFile); !os.IsNotExist(err) {
		t.Fatalf("a new passphrase.key was made beside a stored passphrase: %v", err)
	}
	if _, err := r.RemovePassphrase(ctx, []string{"anna@client.example"}, "admin"); err != nil {
		t.Fatalf("removing the unreadable passphrase: %v", err)
	}
	if _, err := r.SetPassphrase(ctx, []string{"bert@client.example"}, "Chart 8", annaReplacement, "admin"); err != nil {
		t.Fatalf("with no passphrase left on file a new key is made: %v", err)
	}
	if secret, _, err := r.Passphrase(ctx, "bert@client.example"); err != nil || secret != annaReplacement {
		t.Fatalf("read back %q, %v", secret, err)
	}
	if err := r.CheckPassphraseKey(ctx); err != nil {
		t.Errorf("CheckPassphraseKey with a readable passphrase: %v", err)
	}
}

func mustExec(t *testing.T, db *sql.DB, stmt string, args ...any) {
	t.Helper()
	if _, err := db.Exec(stmt, args...); err != nil {
		t.Fatal(err)
	}
}

// TestPassphraseValidation: only a prepared passphrase fit for a client is
// stored, and no error repeats it.
func TestPassphraseValidation(t *testing.T) {
	r, _ := openTestRegistry(t)
	ctx := context.Background()
	for _, tt := range []struct{ p, want string }{
		{"short pass", "shorter than 12"},
		{"correct", "shorter than 12"},
		{"\u00a0padded passphrase words", "not prepared"},
	} {
		_, err := r.SetPassphrase(ctx, []string{"anna@client.example"}, "Chart 7", tt.p, "admin")
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), strings.TrimSpace(tt.p)) {
			t.Errorf("%q: %v; want %q, without the passphrase", tt.p, err, tt.want)
		}
	}
	if _, err := r.SetPassphrase(ctx, []string{"not an address"}, "x", annaPassphrase, ""); err == nil ||
		!strings.Contains(err.Error(), "not an address") || !strings.Contains(err.Error(), "who recorded") {
		t.Errorf("bad address, no recorder: %v", err)
	}
	if evs, _ := r.EventsSince(ctx, 0); len(evs) != 0 {
		t.Fatalf("refused passphrases left events: %+v", evs)
	}
}

// TestImportPassphrases: the optional passphrase column sets a client's
// passphrase, beside a consent or alone; one bad passphrase fails the
// whole file, naming its line and never the passphrase.
func TestImportPassphrases(t *testing.T) {
	r, _ := openTestRegistry(t)
	ctx := context.Background()
	bad := "address,name,signed,evidence,expires,passphrase\n" +
		"anna@client.example,Chart 7,2026-01-02,form,," + annaPassphrase + "\n" +
		"bert@client.example,Chart 8,,,,tooshort\n"
	_, err := r.Import(ctx, strings.NewReader(bad), "admin")
	if err == nil || !strings.Contains(err.Error(), "line 3: passphrase: the passphrase is shorter than 12") ||
		strings.Contains(err.Error(), "tooshort") || !strings.Contains(err.Error(), "nothing was imported") {
		t.Fatalf("%v", err)
	}
	if evs, _ := r.EventsSince(ctx, 0); len(evs) != 0 {
		t.Fatalf("a failed import recorded %d events", len(evs))
	}
	good := "address,name,signed,evidence,expires,passphrase\n" +
		"anna@client.example,Chart 7,2026-01-02,form,," + annaPassphrase + "\n" +
		"bert@client.example,Chart 8,,,,\"" + annaReplacement + "\"\n" +
		"carl@client.example,Chart 9,2026-01-03,form,,\n"
	n, err := r.Import(ctx, strings.NewReader(good), "admin")
	if err != nil || n != 3 {
		t.Fatalf("%d, %v", n, err)
	}
	want := map[string]string{"anna@client.example": "active " + annaPassphrase, "bert@client.example": "none " + annaReplacement,
		"carl@client.example": "active "}
	for a, w := range want {
		st, _ := r.Current(ctx, a, time.Now())
		secret, _, err := r.Passphrase(ctx, a)
		if got := string(st.State) + " " + secret; got != w || err != nil {
			t.Errorf("%s: %q %v; want %q", a, got, err, w)
		}
	}
	broken := "address,name,signed,evidence,expires,passphrase\nerin@client.example,,,,,\"Unclosed \"quote here\n"
	if _, err := r.Import(ctx, strings.NewReader(broken), "admin"); err == nil || !strings.Contains(err.Error(), "line 2, column") || strings.Contains(err.Error(), "Unclosed") {
		t.Errorf("a line that is not CSV: %v; want its line, without its text", err)
	}
	if _, err := r.Import(ctx, strings.NewReader("address,name,signed,evidence,expires\ndora@client.example,Chart 10,2026-01-02,form,\n"), "admin"); err != nil {
		t.Errorf("a file without the passphrase column: %v", err)
	}
}

// TestRegistryMigration: a registry written before passphrases opens with
// every event as it was and takes passphrase events; its history stays
// append-only.
func TestRegistryMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registry.db")
	old, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	oldSchema := `CREATE TABLE consent_events (id INTEGER PRIMARY KEY AUTOINCREMENT,
		kind TEXT NOT NULL CHECK (kind IN ('given', 'revoked')), client TEXT NOT NULL DEFAULT '', signed TEXT NOT NULL DEFAULT '',
		evidence TEXT NOT NULL DEFAULT '', expires TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '',
		recorded_by TEXT NOT NULL, recorded_at TEXT NOT NULL);
	CREATE TABLE consent_addresses (event_id INTEGER NOT NULL REFERENCES consent_events(id), address TEXT NOT NULL);
	CREATE TRIGGER consent_events_append_only_d BEFORE DELETE ON consent_events BEGIN SELECT RAISE(ABORT, 'the consent registry is append-only'); END;
	INSERT INTO consent_events VALUES (1, 'given', 'Chart 7', '2026-01-02', 'form', '', '', 'admin', '2026-01-02T10:00:00Z');
	INSERT INTO consent_events VALUES (5, 'revoked', 'Chart 7', '', '', '', 'by phone', 'admin', '2026-02-02T10:00:00Z');
	INSERT INTO consent_addresses VALUES (1, 'anna@client.example'), (5, 'anna@client.example');`
	if _, err := old.Exec(oldSchema); err != nil {
		t.Fatal(err)
	}
	old.Close()
	r, err := OpenRegistry(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	evs, err := r.EventsSince(ctx, 0)
	if err != nil || len(evs) != 2 || evs[0].ID != 1 || evs[1].ID != 5 || evs[1].Reason != "by phone" || evs[0].Addresses[0] != "anna@client.example" {
		t.Fatalf("history after the migration: %+v %v", evs, err)
	}
	set, err := r.SetPassphrase(ctx, []string{"anna@client.example"}, "Chart 7", annaPassphrase, "admin")
	if err != nil || set.ID != 6 {
		t.Fatalf("passphrase on a migrated registry: %+v %v", set, err)
	}
	if st, _ := r.Current(ctx, "anna@client.example", time.Now()); st.State != ConsentRevoked || st.Passphrase == nil {
		t.Fatalf("standing %+v", st)
	}
	// A sealpost from before passphrases reads consent_addresses only: it
	// must not take a passphrase for a consent.
	var n int
	r.db.QueryRow(`SELECT count(*) FROM consent_addresses WHERE event_id = ?`, set.ID).Scan(&n)
	if n != 0 {
		t.Error("a passphrase event is in consent_addresses")
	}
	for _, stmt := range []string{"DELETE FROM consent_events", "UPDATE consent_events SET client = 'x'"} {
		if _, err := r.db.Exec(stmt); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s after the migration: %v", stmt, err)
		}
	}
}

// FuzzImport: whatever a consent file holds, the import records all of it
// or nothing, and no problem it reports repeats a passphrase given in it.
func FuzzImport(f *testing.F) {
	f.Add("address,name,signed,evidence,expires,passphrase\nanna@client.example,Chart 7,2026-01-02,form,,violet harbor lantern\n")
	f.Add("address,name,signed,evidence,expires,passphrase\nbert@client.example,,,,,Short-Pass\n\"x,\"y\n")
	f.Add("passphrase,address,name,signed,evidence,expires\n\"secret \"\"quoted\"\" words here\",c@client.example,,,,\n")
	f.Add("address,name,signed,evidence,expires\nd@client.example,Chart,2026-13-01,,\n")
	r, err := OpenRegistry(filepath.Join(f.TempDir(), "registry.db"))
	if err != nil {
		f.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, file string) {
		before, _ := r.EventsSince(ctx, 0)
		n, err := r.Import(ctx, strings.NewReader(file), "fuzz")
		after, _ := r.EventsSince(ctx, 0)
		if err != nil {
			if len(after) != len(before) {
				t.Fatalf("a failed import recorded %d events", len(after)-len(before))
			}
			for _, p := range passphrasesIn(file) {
				if strings.Contains(err.Error(), p) {
					t.Fatalf("the error repeats the passphrase %q: %v", p, err)
				}
			}
			return
		}
		if n == 0 && len(after) != len(before) || n > 0 && len(after) < len(before)+n {
			t.Fatalf("%d rows imported, %d events recorded", n, len(after)-len(before))
		}
	})
}

// passphrasesIn is every value of the passphrase column, as csv reads it,
// that no other field holds: an error may name those.
func passphrasesIn(file string) []string {
	cr := csv.NewReader(strings.NewReader(file))
	cr.FieldsPerRecord, cr.TrimLeadingSpace = -1, true
	col := -1
	var secrets, others []string
	for i := 0; ; i++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			continue
		}
		for j, v := range rec {
			switch {
			case i == 0 && strings.ToLower(strings.TrimSpace(strings.TrimPrefix(v, "\ufeff"))) == "passphrase":
				col = j
			case i > 0 && j == col:
				secrets = append(secrets, strings.TrimSpace(v))
			default:
				others = append(others, v)
			}
		}
	}
	var out []string
	for _, s := range secrets {
		// Lower-case words and numbers may be in any problem's own text.
		ownWords := strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789 ") == ""
		if len(s) >= 4 && !ownWords && !strings.Contains(strings.Join(others, "\x00"), s) {
			out = append(out, s)
		}
	}
	return out
}
