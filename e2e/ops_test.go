package e2e

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// get fetches url and returns status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestOperatorEndpoints: what an admin's systemd, monitoring and mail
// clients see of a running sealpost: READY=1 on the notify socket, /healthz,
// /readyz, /metrics after real traffic (swaks, openssl), and the settings
// Thunderbird fetches.
func TestOperatorEndpoints(t *testing.T) {
	testutil.RequireTools(t, "swaks", "openssl")
	notify := filepath.Join(t.TempDir(), "notify.sock")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	metrics := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	autoconf := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	r := StartRelay(t, RelayOptions{Env: []string{"NOTIFY_SOCKET=" + notify}, Sections: fmt.Sprintf(`
[metrics]
listen = %q
[autoconfig]
listen = %q
imap = "imap.provider.example:993"
`, metrics, autoconf)})

	sock.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 256)
	n, err := sock.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		t.Fatalf("systemd notify socket got %q, %v; want READY=1", buf[:n], err)
	}

	if code, body := get(t, "http://"+metrics+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get(t, "http://"+metrics+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d %q; want 200 with a writable spool and archive and the outbox as upstream", code, body)
	}

	if out, ok := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example")...); !ok {
		t.Fatalf("swaks: %s", out)
	}
	Swaks(t, r.SwaksArgs("--to", "client@elsewhere.example")...)
	Swaks(t, "--server", r.Submission, "--tls", "--tls-ca-path", r.CA, "--auth", "PLAIN", "--auth-user", User,
		"--auth-password", "wrong", "--from", From, "--to", "colleague@practice.example")

	// An early talker (a bot that sends before the 220) is cut off with the
	// default greeting wait (200ms).
	if line := talkFirst(t, r.Submission); !strings.HasPrefix(line, "554 5.5.1 ") {
		t.Errorf("a client talking before the greeting read %q, want 554 5.5.1", line)
	}

	// TLS 1.0 and 1.1 are refused by the server itself: openssl's client is
	// told to allow them (SECLEVEL=0) and gets the server's protocol alert.
	for _, v := range []string{"-tls1", "-tls1_1"} {
		for _, mode := range [][]string{{"-connect", r.Submissions}, {"-starttls", "smtp", "-connect", r.Submission}} {
			args := append(append([]string{"s_client"}, mode...), v, "-cipher", "DEFAULT@SECLEVEL=0", "-CAfile", r.CA)
			out, _ := exec.Command("openssl", args...).CombinedOutput()
			if !strings.Contains(string(out), "alert protocol version") {
				t.Errorf("openssl %v: not refused with a protocol-version alert:\n%s", args, out)
			}
		}
	}
	out, err := exec.Command("openssl", "s_client", "-connect", r.Submissions, "-tls1_2", "-CAfile", r.CA, "-verify_return_error").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Verify return code: 0 (ok)") {
		t.Errorf("openssl with TLS 1.2 and the local CA did not verify: %v\n%s", err, out)
	}

	var text string
	testutil.WaitWithin(t, 10*time.Second, "the delivery in /metrics", func() bool {
		_, text = get(t, "http://"+metrics+"/metrics")
		return strings.Contains(text, "sealpost_deliveries_total 1")
	})
	for _, want := range []string{
		"sealpost_messages_accepted_total 1",
		`sealpost_refusals_total{reason="recipient_policy",stage="rcpt"} 1`,
		`sealpost_auth_failures_total{reason="bad_credentials"} 1`,
		`sealpost_refusals_total{reason="early_talker",stage="connect"} 1`,
		"sealpost_tls_handshake_failures_total 4\n",
		"sealpost_queue_messages 0",
		"sealpost_archive_bytes ",
		"sealpost_archive_records ",
		"go_goroutines ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q\n%s", want, grepLines(text, "sealpost_"))
		}
	}
	if strings.Contains(text, "elsewhere.example") {
		t.Error("/metrics names a client address")
	}

	code, body := get(t, "http://"+autoconf+"/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress="+From)
	var cfg struct {
		Outgoing []struct {
			Hostname   string `xml:"hostname"`
			Port       string `xml:"port"`
			SocketType string `xml:"socketType"`
			Username   string `xml:"username"`
		} `xml:"emailProvider>outgoingServer"`
		Incoming []struct {
			Hostname string `xml:"hostname"`
		} `xml:"emailProvider>incomingServer"`
	}
	if err := xml.Unmarshal([]byte(body), &cfg); code != 200 || err != nil {
		t.Fatalf("autoconfig: %d %v\n%s", code, err, body)
	}
	_, subPort, _ := net.SplitHostPort(r.Submissions)
	if len(cfg.Outgoing) == 0 || cfg.Outgoing[0].Hostname != "localhost" || cfg.Outgoing[0].Port != subPort ||
		cfg.Outgoing[0].SocketType != "SSL" || cfg.Outgoing[0].Username != User || len(cfg.Incoming) != 1 {
		t.Errorf("autoconfig for %s:\n%s", From, body)
	}

	// An archive that cannot be written makes the relay unready.
	arch := filepath.Join(r.DataDir, "archive")
	if err := os.Rename(arch, arch+".away"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitWithin(t, 10*time.Second, "/readyz to fail", func() bool {
		code, _ := get(t, "http://"+metrics+"/readyz")
		return code == http.StatusServiceUnavailable
	})
	_, body = get(t, "http://"+metrics+"/readyz")
	if !strings.Contains(body, "archive") {
		t.Errorf("/readyz does not say the archive is the problem: %q", body)
	}
	os.Rename(arch+".away", arch)
}

func grepLines(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// talkFirst connects and sends EHLO and MAIL at once, without waiting for the
// greeting, and returns the first line it reads back.
func talkFirst(t *testing.T, addr string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "EHLO bot.example\r\nMAIL FROM:<%s>\r\n", From); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the reply to an early talker: %v", err)
	}
	return strings.TrimRight(line, "\r\n")
}
