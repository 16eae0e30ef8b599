package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/sealpost/sealpost/internal/testutil"
)

// The account every e2e relay has.
const (
	User     = "therapist"
	Password = "e2e-password"
	From     = "therapist@practice.example"
)

// Relay is a sealpost serve process with its own config and data dir.
type Relay struct {
	Dir         string // holds sealpost.toml and the data dir
	Config      string
	DataDir     string
	Submission  string
	Submissions string
	CA          string // the local CA mail clients must trust
	Logs        *testutil.LockedBuffer
	cmd         *exec.Cmd
	pid         int
	exited      chan struct{}
	bin         string
	env         []string
}

// RelayOptions shape the relay's configuration.
type RelayOptions struct {
	Upstream *Postfix // nil: deliver into the outbox Maildir (or Sink)
	// Sink delivers straight into smtp-sink over loopback without TLS.
	Sink *Sink
	// NoAuth makes sealpost log in to no provider (an IP-authorised Postfix).
	NoAuth bool
	// OAuth2 makes the account log in to the provider with OAuth 2.0 grants
	// from this server (upstream_auth = "oauth2"); Setup must sign in.
	OAuth2 *FakeOAuth
	// SMTP is TOML added to the [smtp] section.
	SMTP string
	// Sections is TOML appended to the configuration ([policy], [pgp] ...).
	// When it has a [policy] section the default one is left out.
	Sections string
	// Upstream schedule (defaults are short, for tests).
	RetryMin, RetryMax, Lifetime string
	// Quiet logs only warnings (benchmarks).
	Quiet bool
	// LogFormat is "text" (the default) or "json".
	LogFormat string
	// Env is added to the process's environment (NOTIFY_SOCKET).
	Env []string
	// Setup runs before sealpost first starts: admin commands (r.Run)
	// whose effect the first start must already see.
	Setup func(r *Relay)
	// Binary is the sealpost to run ("": Sealpost's build), such as
	// SealpostTestClock's.
	Binary string
}

func (o RelayOptions) logLevel() string {
	if o.Quiet {
		return "warn"
	}
	return "debug"
}

func (o RelayOptions) logFormat() string {
	if o.LogFormat == "" {
		return "text"
	}
	return o.LogFormat
}

// StartRelay writes a configuration and starts sealpost serve.
func StartRelay(t testing.TB, o RelayOptions) *Relay {
	t.Helper()
	bin := o.Binary
	if bin == "" {
		bin = Sealpost(t)
	}
	dir := t.TempDir()
	r := &Relay{Dir: dir, Config: filepath.Join(dir, "sealpost.toml"), DataDir: filepath.Join(dir, "data"), bin: bin, env: o.Env}
	r.Submission = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	r.Submissions = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	r.CA = filepath.Join(r.DataDir, "tls", "ca.pem")
	hash, err := bcrypt.GenerateFromPassword([]byte(Password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if o.RetryMin == "" {
		o.RetryMin = "200ms"
	}
	if o.Lifetime == "" {
		o.Lifetime = "1h"
	}
	if o.RetryMax == "" {
		o.RetryMax = "2s"
	}
	upstream := `address = "outbox"`
	account := ""
	if o.Sink != nil {
		upstream = fmt.Sprintf("address = %q\ntls = \"none\"\nworkers = 16", o.Sink.Addr())
	}
	if p := o.Upstream; p != nil {
		upstream = fmt.Sprintf("address = %q\ntls = \"starttls\"\nca_file = %q", p.Addr(), p.PKI.CAFile)
		if p.Username != "" && o.OAuth2 != nil {
			account = fmt.Sprintf("upstream_username = %q\nupstream_auth = \"oauth2\"\n", p.Username)
			o.Sections += "\n" + o.OAuth2.ConfigTOML()
		} else if p.Username != "" && !o.NoAuth {
			pwFile := filepath.Join(dir, "upstream-password")
			os.WriteFile(pwFile, []byte(p.Password+"\n"), 0o600)
			account = fmt.Sprintf("upstream_username = %q\nupstream_password_file = %q\n", p.Username, pwFile)
		}
	}
	policy := "[policy]\ninternal_domains = [\"practice.example\"]\nnotice = \"Notice of Confidentiality: e2e.\"\n"
	if strings.Contains(o.Sections, "[policy]") {
		policy = ""
	}
	cfg := fmt.Sprintf(`data_dir = "data"
[log]
level = %q
format = %q
[smtp]
hostname = "localhost"
submission = %q
submissions = %q
max_message_bytes = 10485760
%s
[[account]]
username = %q
password_hash = %q
addresses = [%q]
%s
[upstream]
%s
retry_min = %q
retry_max = %q
lifetime = %q
delay_warning = "1h"
timeout = "10s"
%s
%s
`, o.logLevel(), o.logFormat(), r.Submission, r.Submissions, o.SMTP, User, hash, From, account, upstream, o.RetryMin, o.RetryMax, o.Lifetime, policy, o.Sections)
	if err := os.WriteFile(r.Config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if o.Setup != nil {
		o.Setup(r)
	}
	r.Start(t)
	t.Cleanup(func() { r.Stop(t) })
	return r
}

// Start runs sealpost serve (again) and waits until it listens.
func (r *Relay) Start(t testing.TB) {
	t.Helper()
	if r.Logs == nil {
		r.Logs = &testutil.LockedBuffer{}
	}
	r.cmd = exec.Command(r.bin, "serve", "-c", r.Config)
	r.cmd.Stdout, r.cmd.Stderr = r.Logs, r.Logs
	if len(r.env) > 0 {
		r.cmd.Env = append(os.Environ(), r.env...)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.pid = r.cmd.Process.Pid
	exited := make(chan struct{})
	r.exited = exited
	go func() { r.cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("sealpost serve exited at start:\n%s", r.Logs.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", r.Submission, 100*time.Millisecond); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sealpost serve did not start:\n%s", r.Logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop sends SIGTERM and waits for a clean exit.
func (r *Relay) Stop(t testing.TB) {
	t.Helper()
	if r.cmd == nil {
		return
	}
	syscall.Kill(r.pid, syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(60 * time.Second):
		t.Errorf("sealpost serve did not stop within a minute of SIGTERM")
		syscall.Kill(r.pid, syscall.SIGKILL)
		<-r.exited
	}
	r.cmd = nil
}

// Pid is the relay process's id.
func (r *Relay) Pid() int { return r.pid }

// Kill ends the relay with SIGKILL, as a crash or power cut would.
func (r *Relay) Kill(t testing.TB) {
	t.Helper()
	syscall.Kill(r.pid, syscall.SIGKILL)
	<-r.exited
	r.cmd = nil
}

// Run runs a sealpost subcommand against this relay's configuration.
func (r *Relay) Run(t testing.TB, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runCommand(t, exec.Command(r.bin, append(args, "-c", r.Config)...), stdin)
}

// runCommand runs cmd with stdin, and gives what it wrote and its exit
// status; a command that cannot be started fails the test.
func runCommand(t testing.TB, cmd *exec.Cmd, stdin string) (stdout, stderr string, code int) {
	t.Helper()
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// Outbox returns the messages delivered into the outbox Maildir.
func (r *Relay) Outbox(t testing.TB) []string {
	t.Helper()
	dir := filepath.Join(r.DataDir, "outbox", "new")
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err == nil {
			out = append(out, string(b))
		}
	}
	return out
}

// SwaksArgs are the arguments for a logged-in STARTTLS submission.
func (r *Relay) SwaksArgs(extra ...string) []string {
	return append([]string{"--server", r.Submission, "--tls", "--tls-ca-path", r.CA, "--auth", "PLAIN",
		"--auth-user", User, "--auth-password", Password, "--from", From}, extra...)
}
