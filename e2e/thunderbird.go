package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// Thunderbird is Debian's Thunderbird in a fresh profile on an Xvfb display
// of its own, driven through its Marionette remote protocol (TESTING.md,
// "Thunderbird under Xvfb").
type Thunderbird struct {
	Display string // ":N", for xdotool and import
	Profile string
	Log     *testutil.LockedBuffer
	mn      *marionette
}

// StartThunderbird starts Xvfb and Thunderbird with args (such as a .eml
// file to open in a message window), and ends both when the test ends.
func StartThunderbird(t testing.TB, args ...string) *Thunderbird {
	t.Helper()
	testutil.RequireTools(t, "thunderbird", "Xvfb", "xdotool")
	dir := t.TempDir()
	tb := &Thunderbird{Display: startXvfb(t), Profile: filepath.Join(dir, "profile"), Log: &testutil.LockedBuffer{}}
	port := FreePort(t)
	if err := os.MkdirAll(tb.Profile, 0o700); err != nil {
		t.Fatal(err)
	}
	// What a first start would otherwise ask or fetch: whether to be the
	// default client, the start page, "Know your rights", telemetry.
	prefs := []struct {
		name  string
		value any
	}{
		{"marionette.port", port},
		{"mail.shell.checkDefaultClient", false},
		{"mailnews.start_page.enabled", false},
		{"mail.provider.enabled", false},
		{"mail.rights.override", true},
		{"datareporting.policy.dataSubmissionEnabled", false},
		{"toolkit.telemetry.reportingpolicy.firstRun", false},
	}
	var userJS strings.Builder
	for _, p := range prefs {
		fmt.Fprintf(&userJS, "user_pref(%q, %v);\n", p.name, p.value)
	}
	if err := os.WriteFile(filepath.Join(tb.Profile, "user.js"), []byte(userJS.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	// System access is what lets Marionette run scripts in Thunderbird's own
	// windows (the chrome context) instead of only in web content.
	cmd := exec.Command("thunderbird", append([]string{"--profile", tb.Profile, "--no-remote", "--marionette", "-remote-allow-system-access"}, args...)...)
	// HOME in the test's folder keeps Thunderbird's caches and the
	// profile list of whoever runs the tests out of it.
	cmd.Env = append(os.Environ(), "DISPLAY="+tb.Display, "HOME="+dir, "XDG_CACHE_HOME="+filepath.Join(dir, "cache"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "MOZ_CRASHREPORTER_DISABLE=1")
	cmd.Stdout, cmd.Stderr = tb.Log, tb.Log
	// Its own process group, so that the cleanup ends its content
	// processes with it and nothing writes into the profile being removed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		if t.Failed() {
			t.Logf("thunderbird's output:\n%s", tb.Log.String())
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	testutil.WaitWithin(t, 30*time.Second, "Thunderbird's Marionette on "+addr, func() bool {
		select {
		case <-exited:
			t.Fatalf("thunderbird exited at start:\n%s", tb.Log.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	mn, err := dialMarionette(addr)
	if err != nil {
		t.Fatalf("marionette: %v\n%s", err, tb.Log.String())
	}
	t.Cleanup(func() { mn.conn.Close() })
	tb.mn = mn
	return tb
}

// Eval runs script (the body of a function that finds args in arguments;
// it may return a promise) in Thunderbird's chrome context and decodes what
// it returns into out.
func (tb *Thunderbird) Eval(out any, script string, args ...any) error {
	if args == nil {
		args = []any{}
	}
	res, err := tb.mn.call("WebDriver:ExecuteScript", map[string]any{"script": script, "args": args})
	if err != nil {
		return err
	}
	var v struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(res, &v); err != nil {
		return err
	}
	return json.Unmarshal(v.Value, out)
}

// VisibleWindows returns the names of the windows mapped on the display
// whose name matches the regular expression name, as the X server knows them.
func (tb *Thunderbird) VisibleWindows(name string) []string {
	cmd := exec.Command("xdotool", "search", "--onlyvisible", "--name", name, "getwindowname", "%@")
	cmd.Env = append(os.Environ(), "DISPLAY="+tb.Display)
	out, _ := cmd.Output()
	return strings.FieldsFunc(string(out), func(r rune) bool { return r == '\n' })
}

// Screenshot saves the whole display as a PNG (ImageMagick's import).
func (tb *Thunderbird) Screenshot(t testing.TB, path string) {
	t.Helper()
	if out, err := exec.Command("import", "-display", tb.Display, "-window", "root", path).CombinedOutput(); err != nil {
		t.Errorf("screenshot: %v\n%s", err, out)
	}
}

// startXvfb starts a virtual display and returns its name. Xvfb picks a
// free display number itself (-displayfd), so tests and people running
// Thunderbird at the same time never meet on one.
func startXvfb(t testing.TB) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command("Xvfb", "-displayfd", "3", "-screen", "0", "1280x900x24", "-nolisten", "tcp")
	cmd.ExtraFiles = []*os.File{w}
	logs := &testutil.LockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	err = cmd.Start()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	// SIGTERM, unlike SIGKILL, lets Xvfb remove its socket and lock file
	// in /tmp.
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	// Xvfb writes the number once it accepts clients, and closes the pipe
	// if it dies first: the read ends either way.
	line, _ := bufio.NewReader(r).ReadString('\n')
	n, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("Xvfb did not start (%q):\n%s", line, logs.String())
	}
	return fmt.Sprintf(":%d", n)
}

// marionette is a client of Gecko's Marionette protocol: JSON messages,
// each preceded by its length in decimal and a colon; a command is
// [0, id, name, params], its answer [1, id, error, result].
type marionette struct {
	conn net.Conn
	r    *bufio.Reader
	id   int
}

func dialMarionette(addr string) (*marionette, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	m := &marionette{conn: conn, r: bufio.NewReader(conn)}
	var hello struct {
		Protocol int `json:"marionetteProtocol"`
	}
	if err := m.read(&hello); err != nil || hello.Protocol != 3 {
		conn.Close()
		return nil, fmt.Errorf("greeting: protocol %d, %v", hello.Protocol, err)
	}
	if _, err := m.call("WebDriver:NewSession", map[string]any{}); err != nil {
		conn.Close()
		return nil, err
	}
	if _, err := m.call("Marionette:SetContext", map[string]any{"value": "chrome"}); err != nil {
		conn.Close()
		return nil, err
	}
	return m, nil
}

func (m *marionette) read(v any) error {
	m.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := m.r.ReadString(':')
	if err != nil {
		return err
	}
	size, err := strconv.Atoi(strings.TrimSuffix(n, ":"))
	if err != nil {
		return fmt.Errorf("frame length %q", n)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(m.r, b); err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func (m *marionette) call(name string, params any) (json.RawMessage, error) {
	m.id++
	b, err := json.Marshal([]any{0, m.id, name, params})
	if err != nil {
		return nil, err
	}
	if _, err := fmt.Fprintf(m.conn, "%d:%s", len(b), b); err != nil {
		return nil, err
	}
	var resp []json.RawMessage
	if err := m.read(&resp); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var id int
	if len(resp) != 4 || json.Unmarshal(resp[1], &id) != nil || id != m.id {
		return nil, fmt.Errorf("%s: unexpected answer %s", name, resp)
	}
	if string(resp[2]) != "null" {
		var e struct{ Error, Message string }
		json.Unmarshal(resp[2], &e)
		return nil, fmt.Errorf("%s: %s: %s", name, e.Error, e.Message)
	}
	return resp[3], nil
}
