package testutil

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync/atomic"
	"testing"
)

// Postgres is a private PostgreSQL server for one test: Debian's package,
// initdb in a temporary directory, on 127.0.0.1 and a free port, stopped
// and removed when the test ends.
type Postgres struct {
	Port int
	dir  string
	bin  string
	t    testing.TB
	dbs  atomic.Int64
	tls  bool // server.crt and server.key in dir
}

// StartPostgres starts a server; it skips (fails under
// SEALPOST_E2E=require) where PostgreSQL is not installed.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	return startPostgres(t, nil)
}

// StartPostgresTLS starts a server that offers TLS with pki's certificate
// (for localhost and 127.0.0.1), besides plaintext.
func StartPostgresTLS(t testing.TB, pki *PKI) *Postgres {
	t.Helper()
	return startPostgres(t, pki)
}

func startPostgres(t testing.TB, pki *PKI) *Postgres {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		RequireTools(t, "/usr/lib/postgresql/15/bin/initdb")
	}
	sort.Slice(bins, func(i, j int) bool { return pgVersion(bins[i]) < pgVersion(bins[j]) })
	p := &Postgres{bin: filepath.Dir(bins[len(bins)-1]), t: t}
	// initdb refuses root, and the postgres user must reach the directory:
	// not below t.TempDir(), whose parents are root's alone.
	dir, err := os.MkdirTemp("", "sealpost-pg-")
	if err != nil {
		t.Fatal(err)
	}
	p.dir = dir
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "postgres", dir).CombinedOutput(); err != nil {
			t.Fatalf("chown postgres %s: %v: %s", dir, err, out)
		}
	}
	p.run("initdb", "-D", filepath.Join(dir, "data"), "-A", "trust", "-U", "postgres", "--no-sync")
	if pki != nil {
		p.tls = true
		for src, dst := range map[string]string{pki.CertFile: "server.crt", pki.KeyFile: "server.key"} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, dst), b, 0o600); err != nil {
				t.Fatal(err)
			}
			if os.Geteuid() == 0 {
				exec.Command("chown", "postgres", filepath.Join(dir, dst)).Run()
			}
		}
	}
	p.Port = freePort(t)
	p.Start()
	t.Cleanup(p.stop)
	return p
}

func pgVersion(initdb string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return n
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// run runs one of PostgreSQL's programs as the postgres user when the
// test runs as root.
func (p *Postgres) run(prog string, args ...string) {
	p.t.Helper()
	if err := p.runErr(prog, args...); err != nil {
		p.t.Fatal(err)
	}
}

func (p *Postgres) runErr(prog string, args ...string) error {
	path := filepath.Join(p.bin, prog)
	cmd := exec.Command(path, args...)
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %v: %w\n%s", prog, args, err, out)
	}
	return nil
}

// Start starts the server (again, after Stop) and waits until it accepts
// connections.
func (p *Postgres) Start() {
	p.t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", p.Port, p.dir)
	if p.tls {
		opts += fmt.Sprintf(" -c ssl=on -c ssl_cert_file=%s/server.crt -c ssl_key_file=%s/server.key", p.dir, p.dir)
	}
	p.run("pg_ctl", "-D", filepath.Join(p.dir, "data"), "-l", filepath.Join(p.dir, "log"), "-w", "-o", opts, "start")
}

// Stop stops the server (fast: open sessions are ended).
func (p *Postgres) Stop() {
	p.t.Helper()
	p.run("pg_ctl", "-D", filepath.Join(p.dir, "data"), "-m", "fast", "-w", "stop")
}

func (p *Postgres) stop() {
	p.runErr("pg_ctl", "-D", filepath.Join(p.dir, "data"), "-m", "immediate", "-w", "stop")
}

// URL is a connection URL for database db as the superuser postgres
// (tests only: no TLS, no password, on loopback).
func (p *Postgres) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

// NewDatabase creates an empty database and returns its URL.
func (p *Postgres) NewDatabase() string {
	p.t.Helper()
	name := fmt.Sprintf("sealpost_%d", p.dbs.Add(1))
	p.Psql("postgres", "CREATE DATABASE "+name)
	return p.URL(name)
}

// Psql runs one SQL command in database db with psql, as the superuser.
func (p *Postgres) Psql(db, command string) {
	p.t.Helper()
	if err := p.PsqlAs("postgres", db, command); err != nil {
		p.t.Fatal(err)
	}
}

// PsqlAs runs one SQL command in database db as role, and returns psql's
// error with what it printed.
func (p *Postgres) PsqlAs(role, db, command string) error {
	return p.runErr("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", strconv.Itoa(p.Port), "-U", role, "-d", db, "-c", command)
}
