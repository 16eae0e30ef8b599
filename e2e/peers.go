package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// FreePort returns a loopback port nobody listens on right now, and that no
// other FreePort call in this test binary returns. Ports come from below the
// kernel's ephemeral range when there is room: a port from 127.0.0.1:0 goes
// back into that range when closed, and a relay restarted on it could then
// find it taken by an outgoing connection or another package's test listener.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	if nextPort == 0 {
		nextPort = firstPort()
	}
	for nextPort > 0 && nextPort < portsEnd {
		port := nextPort
		nextPort++
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			l.Close()
			return port
		}
	}
	nextPort = -1 // no room below the ephemeral range: let the kernel choose
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var (
	portsMu  sync.Mutex
	nextPort int
	portsEnd int
)

// firstPort starts each test binary at its own place in the 10000 ports
// below the ephemeral range, so that two e2e binaries running at once (go
// test -count, or two checkouts) rarely meet.
func firstPort() int {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	portsEnd = low
	if low < 12000 {
		return -1
	}
	return low - 10000 + os.Getpid()%8000
}

// WaitListening waits until something accepts connections on addr.
func WaitListening(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	testutil.WaitWithin(t, timeout, addr+" to listen", func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// Sink is Postfix's smtp-sink: the simplest receiver. Each message becomes a
// file starting with X-Mail-Args: and X-Rcpt-Args: lines (the envelope).
type Sink struct {
	Dir  string
	Port int
	cmd  *exec.Cmd
	args []string
}

// StartSink runs smtp-sink on a free loopback port. extra are smtp-sink
// options for faults (-w delay, -q/-r/-f reject at a stage).
func StartSink(t testing.TB, extra ...string) *Sink {
	t.Helper()
	testutil.RequireTools(t, "smtp-sink")
	testutil.RequireRoot(t, "run smtp-sink as user nobody")
	dir := filepath.Join(t.TempDir(), "sink")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	openUp(dir)
	exec.Command("chown", "nobody", dir).Run()
	port := FreePort(t)
	args := append([]string{"-u", "nobody", "-d", dir + "/%Y%m%d%H%M%S."}, extra...)
	args = append(args, fmt.Sprintf("127.0.0.1:%d", port), "100")
	s := &Sink{Dir: dir, Port: port, args: args}
	s.Start(t)
	t.Cleanup(func() { s.Stop() })
	return s
}

func (s *Sink) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.Port) }

// Start runs smtp-sink (again, on the same port: a provider coming back).
func (s *Sink) Start(t testing.TB) {
	t.Helper()
	s.cmd = exec.Command("smtp-sink", s.args...)
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	WaitListening(t, s.Addr(), 10*time.Second)
}

// Stop ends smtp-sink: the provider is down.
func (s *Sink) Stop() {
	if s.cmd != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

// SinkMessage is one message smtp-sink received.
type SinkMessage struct {
	From string
	To   []string
	Data string // the message as received, without smtp-sink's envelope lines
	File string
}

// Messages reads what the sink received so far.
func (s *Sink) Messages(t testing.TB) []SinkMessage {
	t.Helper()
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []SinkMessage
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(s.Dir, e.Name()))
		// smtp-sink writes the file while the message arrives and ends it
		// with an empty line: a file without one is still being written.
		if err != nil || !bytes.HasSuffix(b, []byte("\n\n")) {
			continue
		}
		m := SinkMessage{File: e.Name()}
		r := bufio.NewReader(bytes.NewReader(b))
		var rest bytes.Buffer
		inEnvelope := true
		for {
			line, err := r.ReadString('\n')
			if inEnvelope && strings.HasPrefix(line, "X-") && strings.Contains(line, ": ") {
				k, v, _ := strings.Cut(strings.TrimRight(line, "\r\n"), ": ")
				switch k {
				case "X-Mail-Args":
					m.From = strings.Trim(strings.Fields(v + " ")[0], "<>")
				case "X-Rcpt-Args":
					m.To = append(m.To, strings.Trim(strings.Fields(v + " ")[0], "<>"))
				}
				if k == "X-Client-Addr" || k == "X-Client-Proto" || k == "X-Helo-Args" || k == "X-Mail-Args" || k == "X-Rcpt-Args" {
					if err != nil {
						break
					}
					continue
				}
			}
			inEnvelope = false
			rest.WriteString(line)
			if err != nil {
				break
			}
		}
		m.Data = rest.String()
		out = append(out, m)
	}
	return out
}

// Postfix is a private Postfix instance standing in for the practice's mail
// provider: it accepts submissions over STARTTLS (with SASL through Dovecot
// when asked) and relays everything into a Sink.
type Postfix struct {
	Dir  string
	Port int
	Sink *Sink
	PKI  *testutil.PKI
	// Username and Password log in when the instance requires SASL.
	Username, Password string
	dovecot            string
}

type PostfixOptions struct {
	SASL      bool       // require AUTH (Dovecot passwd-file) before relaying
	OAuth2    *FakeOAuth // with SASL: AUTH XOAUTH2 with the fake's tokens instead of a password
	SinkFlags []string   // smtp-sink fault options
	Extra     []string   // more main.cf lines
}

// StartPostfix starts the instance and stops it when the test ends.
func StartPostfix(t testing.TB, o PostfixOptions) *Postfix {
	t.Helper()
	testutil.RequireTools(t, "postfix", "/usr/sbin/postfix", "smtp-sink", "script")
	if o.SASL {
		testutil.RequireTools(t, "dovecot")
	}
	testutil.RequireRoot(t, "run a private Postfix instance")
	sink := StartSink(t, o.SinkFlags...)
	d := t.TempDir()
	openUp(d)
	p := &Postfix{Dir: d, Port: FreePort(t), Sink: sink, PKI: testutil.NewPKI(t)}
	for _, sub := range []string{"etc", "queue", "data"} {
		os.MkdirAll(filepath.Join(d, sub), 0o755)
	}
	exec.Command("chown", "postfix", filepath.Join(d, "data")).Run()
	relayRestrictions := "permit_mynetworks, reject"
	mynetworks := "127.0.0.0/8"
	var sasl string
	if o.SASL {
		p.Username, p.Password = "therapist@practice.example", "upstream-secret"
		authPort := FreePort(t)
		p.dovecot = startDovecotAuth(t, filepath.Join(d, "dovecot"), authPort, p.Username, p.Password, o.OAuth2)
		relayRestrictions = "permit_sasl_authenticated, reject"
		mynetworks = "" // loopback must not be enough: only a login relays
		sasl = fmt.Sprintf("smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = dovecot\nsmtpd_sasl_path = inet:127.0.0.1:%d\nsmtpd_tls_auth_only = yes\n", authPort)
	}
	mainCf := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = provider.test
mydestination =
relayhost = [127.0.0.1]:%[2]d
mynetworks = %[8]s
smtpd_relay_restrictions = %[3]s
smtpd_tls_cert_file = %[4]s
smtpd_tls_key_file = %[5]s
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
maillog_file = %[1]s/maillog
maillog_file_prefixes = /var, /dev/stdout, %[1]s
alias_maps =
local_recipient_maps =
message_size_limit = 104857600
%[6]s%[7]s
`, d, sink.Port, relayRestrictions, p.PKI.CertFile, p.PKI.KeyFile, sasl, strings.Join(o.Extra, "\n"), mynetworks)
	if err := os.WriteFile(filepath.Join(d, "etc", "main.cf"), []byte(mainCf), 0o644); err != nil {
		t.Fatal(err)
	}
	master, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		t.Fatal(err)
	}
	var mc strings.Builder
	for _, line := range strings.Split(string(master), "\n") {
		f := strings.Fields(line)
		// Service lines only: continuation lines start with white space.
		if len(f) >= 8 && line[0] != '#' && line[0] != ' ' && line[0] != '\t' {
			if f[0] == "smtp" && f[1] == "inet" {
				f[0] = fmt.Sprintf("127.0.0.1:%d", p.Port)
			}
			if f[4] == "y" || f[4] == "-" { // no chroot: the instance's files are outside any jail
				f[4] = "n"
			}
			line = strings.Join(f, " ")
		}
		mc.WriteString(line + "\n")
	}
	os.WriteFile(filepath.Join(d, "etc", "master.cf"), []byte(mc.String()), 0o644)
	// postfix prints its errors only to a terminal, hence script(1).
	out, err := runDaemonStart(d, "script", "-qc", "postfix -c "+filepath.Join(d, "etc")+" start", "/dev/null")
	if err != nil {
		t.Fatalf("postfix start: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("postfix", "-c", filepath.Join(d, "etc"), "stop").Run() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.Addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfix did not listen on %s:\n%s\n%s", p.Addr(), out, p.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *Postfix) Addr() string { return fmt.Sprintf("127.0.0.1:%d", p.Port) }

// Log is the instance's mail log.
func (p *Postfix) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, "maillog"))
	return string(b)
}

// Drained reports whether Postfix has handed everything to the sink.
func (p *Postfix) Drained() bool {
	for _, q := range []string{"incoming", "active", "deferred", "maildrop"} {
		ents, _ := os.ReadDir(filepath.Join(p.Dir, "queue", q))
		for _, e := range ents {
			if sub, _ := os.ReadDir(filepath.Join(p.Dir, "queue", q, e.Name())); e.IsDir() && len(sub) > 0 {
				return false
			} else if !e.IsDir() {
				return false
			}
		}
	}
	return true
}

func startDovecotAuth(t testing.TB, dir string, port int, user, pass string, oauth *FakeOAuth) string {
	t.Helper()
	for _, sub := range []string{"run", "state"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o755)
	}
	conf := filepath.Join(dir, "dovecot.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols =
listen = 127.0.0.1
ssl = no
%[3]s
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}
service auth {
  inet_listener {
    address = 127.0.0.1
    port = %[2]d
  }
}
`, dir, port, dovecotPassdb(t, dir, user, pass, oauth))), 0o644)
	// Daemons keep their stdout open: give them files, never a pipe we wait on.
	if out, err := runDaemonStart(dir, "dovecot", "-c", conf); err != nil {
		t.Fatalf("dovecot: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("dovecot", "-c", conf, "stop").Run() })
	WaitListening(t, fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
	return conf
}

// Swaks runs swaks and returns its transcript and whether it exited 0.
func Swaks(t testing.TB, args ...string) (string, bool) {
	t.Helper()
	testutil.RequireTools(t, "swaks")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "swaks", args...).CombinedOutput()
	return string(out), err == nil
}

// runDaemonStart runs a command that starts a daemon, with its output in a
// file: a daemonised child keeps inherited descriptors open, so waiting on a
// pipe would never end.
func runDaemonStart(dir, name string, args ...string) (string, error) {
	f, err := os.CreateTemp(dir, "start-*.log")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	out, _ := os.ReadFile(f.Name())
	return string(out), err
}

// openUp lets unprivileged daemons (smtp-sink as nobody, Postfix's own
// processes) reach dir: t.TempDir's folders are private to root.
func openUp(dir string) {
	for p := dir; p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
		os.Chmod(p, 0o755)
	}
}
