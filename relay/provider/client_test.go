package provider

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/internal/tlsconf"
)

// scriptedProvider answers each line the client sends with the reply a
// test gives for it (after its greeting, inside implicit TLS), and keeps
// what it was sent.
type scriptedProvider struct {
	addr string
	pki  *testutil.PKI
	mu   sync.Mutex
	got  []string
}

// startScripted serves one connection: greeting, then for each line the
// client sends the reply answer gives ("" closes the connection, "-" is no
// reply: a line of a message).
func startScripted(t *testing.T, greeting string, answer func(line string) string) *scriptedProvider {
	t.Helper()
	pki := testutil.NewPKI(t)
	l, err := tls.Listen("tcp", "127.0.0.1:0", pki.ServerTLS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := &scriptedProvider{addr: l.Addr().String(), pki: pki}
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, greeting)
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSuffix(line, "\r\n")
			p.mu.Lock()
			p.got = append(p.got, line)
			p.mu.Unlock()
			switch a := answer(line); a {
			case "":
				return
			case "-":
			default:
				io.WriteString(c, a)
			}
		}
	}()
	return p
}

func (p *scriptedProvider) lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.got...)
}

func (p *scriptedProvider) upstream(t *testing.T) *Upstream {
	t.Helper()
	return NewUpstream(Config{Address: p.addr, TLS: ImplicitTLS, TLSConfig: p.pki.ClientTLS(), Hello: "relay.test", Timeout: 5 * time.Second})
}

// ehloThen answers EHLO with ext and everything else by other.
func ehloThen(ext string, other func(line string) string) func(string) string {
	return func(line string) string {
		if strings.HasPrefix(line, "EHLO ") {
			return "250-provider.test\r\n" + ext
		}
		return other(line)
	}
}

// stepClient is a SASL client that answers the provider's challenges in
// turn, like LOGIN, and notes the mechanisms it was offered.
type stepClient struct {
	mech    string
	answers []string
	offered []string
	fail    error // returned by Next instead of an answer
}

func (c *stepClient) ChooseMechanism(offered []string) { c.offered = offered }
func (c *stepClient) Start() (string, []byte, error)   { return c.mech, nil, nil }
func (c *stepClient) Next(challenge []byte) ([]byte, error) {
	if c.fail != nil {
		return nil, c.fail
	}
	if len(c.answers) == 0 {
		return nil, errors.New("no more answers")
	}
	a := c.answers[0]
	c.answers = c.answers[1:]
	return []byte(a), nil
}

func loginWith(c sasl.Client) *Login {
	return &Login{Account: "t", Username: "therapist@provider.example", SASL: func(context.Context) (sasl.Client, error) { return c, nil }}
}

// TestAuthExchange: AUTH with the login's own SASL client: the mechanisms
// the provider offers are passed to it, every 334 challenge gets its
// answer, and 235 ends the exchange.
func TestAuthExchange(t *testing.T) {
	p := startScripted(t, "220 provider.test ESMTP\r\n", ehloThen("250 AUTH PLAIN LOGIN XOAUTH2\r\n", func(line string) string {
		switch line {
		case "AUTH LOGIN":
			return "334 VXNlcm5hbWU6\r\n"
		case "dXNlcg==":
			return "334 UGFzc3dvcmQ6\r\n"
		case "cGFzcw==":
			return "235 2.7.0 welcome\r\n"
		case "QUIT":
			return "221 bye\r\n"
		}
		return "500 unexpected\r\n"
	}))
	sc := &stepClient{mech: "LOGIN", answers: []string{"user", "pass"}}
	c, err := p.upstream(t).dial(context.Background(), loginWith(sc))
	if err != nil {
		t.Fatal(err)
	}
	c.quit()
	if strings.Join(sc.offered, " ") != "PLAIN LOGIN XOAUTH2" {
		t.Errorf("offered %q", sc.offered)
	}
	if got := strings.Join(p.lines(), "|"); got != "EHLO relay.test|AUTH LOGIN|dXNlcg==|cGFzcw==|QUIT" {
		t.Errorf("the provider was sent %s", got)
	}
}

// TestAuthRefusedOrCancelled: a refusal is the provider's reply, with the
// login named; a challenge the SASL client cannot answer cancels the
// exchange with "*" (RFC 4954) and fails with the client's reason.
func TestAuthRefusedOrCancelled(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		p := startScripted(t, "220 provider.test ESMTP\r\n", ehloThen("250 AUTH LOGIN\r\n", func(line string) string {
			if line == "AUTH LOGIN" {
				return "535-5.7.8 Username and Password\r\n535 5.7.8 not accepted\r\n"
			}
			return "500 unexpected\r\n"
		}))
		_, err := p.upstream(t).dial(context.Background(), loginWith(&stepClient{mech: "LOGIN"}))
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 535 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 8}) || se.Message != "Username and Password\nnot accepted" {
			t.Fatalf("refused login: %#v", err)
		}
		if !strings.Contains(err.Error(), "login to provider as therapist@provider.example") {
			t.Errorf("the error does not name the login: %v", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		p := startScripted(t, "220 provider.test ESMTP\r\n", ehloThen("250 AUTH XOAUTH2\r\n", func(line string) string {
			switch line {
			case "AUTH XOAUTH2":
				return "334 eyJzdGF0dXMiOiI0MDEifQ==\r\n"
			case "*":
				return "501 5.0.0 cancelled\r\n"
			}
			return "500 unexpected\r\n"
		}))
		why := errors.New("the provider refused the token")
		_, err := p.upstream(t).dial(context.Background(), loginWith(&stepClient{mech: "XOAUTH2", fail: why}))
		if !errors.Is(err, why) {
			t.Fatalf("cancelled login: %v", err)
		}
		if got := p.lines(); got[len(got)-1] != "*" {
			t.Errorf("the provider was sent %q; want the exchange cancelled", got)
		}
	})
}

// TestHELOFallback: a provider that does not know EHLO gets HELO, and is
// taken to offer nothing: commands go one at a time.
func TestHELOFallback(t *testing.T) {
	p := startScripted(t, "220 provider.test SMTP\r\n", func(line string) string {
		switch {
		case strings.HasPrefix(line, "EHLO "):
			return "502 5.5.1 what?\r\n"
		case strings.HasPrefix(line, "HELO "):
			return "250 provider.test\r\n"
		case strings.HasPrefix(line, "MAIL "), strings.HasPrefix(line, "RCPT "):
			return "250 ok\r\n"
		case line == "DATA":
			return "354 go\r\n"
		case line == ".":
			return "250 2.0.0 queued\r\n"
		case line == "QUIT":
			return "221 bye\r\n"
		}
		return "-"
	})
	u := p.upstream(t)
	defer u.Close()
	out := u.Deliver(context.Background(), testJob("a@provider.test"))
	if out[0].Err != nil || out[0].Reply != "250 2.0.0 queued" {
		t.Fatalf("outcome %+v", out[0])
	}
	if got := strings.Join(p.lines()[:4], "|"); got != "EHLO relay.test|HELO relay.test|MAIL FROM:<therapist@practice.test>|RCPT TO:<a@provider.test>" {
		t.Errorf("the provider was sent %s", got)
	}
}

// TestEndlessReplyLine: a provider whose reply line does not end within
// maxReplyLine octets is cut off, not buffered without bound.
func TestEndlessReplyLine(t *testing.T) {
	p := startScripted(t, "220 "+strings.Repeat("x", 3*maxReplyLine)+"\r\n", func(string) string { return "" })
	_, err := p.upstream(t).dial(context.Background(), nil)
	if !errors.Is(err, errLongReply) {
		t.Fatalf("an endless greeting: %v", err)
	}
}

// TestReplyParsing: a reply's code, enhanced code and text, as the queue
// and the notices show them.
func TestReplyParsing(t *testing.T) {
	for _, tt := range []struct {
		code      int
		msg, want string
	}{
		{550, "5.1.1 no such user", "550 5.1.1 no such user"},
		{550, "5.1.1 first line\n5.1.1 second line", "550 5.1.1 first line second line"},
		{421, "closing", "421 closing"},
		{554, "5.7.0", "554 5.7.0"},
	} {
		if got := describe(toSMTPError(tt.code, tt.msg)); got != tt.want {
			t.Errorf("%d %q: %q, want %q", tt.code, tt.msg, got, tt.want)
		}
	}
}

// fuzzConn is a provider that answers whatever it is sent with the same
// bytes, then hangs up; what the client writes is discarded.
type fuzzConn struct {
	net.Conn
	r *bytes.Reader
}

func (c *fuzzConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *fuzzConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *fuzzConn) Close() error                     { return nil }
func (c *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzTransaction: whatever a provider answers to a pipelined transaction,
// the client never panics, every recipient gets one outcome, and a
// recipient counts as delivered only on the provider's 250 to the message.
func FuzzTransaction(f *testing.F) {
	for _, s := range []string{
		"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 queued\r\n",
		"250 ok\r\n550 5.1.1 no\r\n250 ok\r\n354 go\r\n250 queued\r\n",
		"553 5.7.1 sender\r\n550 no\r\n550 no\r\n354 go\r\n554 empty\r\n250 reset\r\n",
		"250 ok\r\n451 4.3.0 later\r\n451 4.3.0 later\r\n554 no data\r\n250 reset\r\n",
		"421 4.4.2 closing\r\n",
		"250-a\r\n250 b\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n",
		"",
	} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, replies []byte, pipelining bool) {
		c := newClient(&fuzzConn{r: bytes.NewReader(replies)}, time.Second)
		c.pipelining = pipelining
		j := testJob("a@provider.test", "b@provider.test")
		out, _, _ := c.transaction(j)
		if len(out) != len(j.Recipients) {
			t.Fatalf("%d outcomes for %d recipients", len(out), len(j.Recipients))
		}
		for i, o := range out {
			if o.Recipient != j.Recipients[i] {
				t.Fatalf("outcome %d is for %q", i, o.Recipient)
			}
			if o.Err == nil && !strings.HasPrefix(o.Reply, "250 ") {
				t.Fatalf("delivered on %q", o.Reply)
			}
			if o.Err != nil && o.Permanent != (replyCode(o.Err)/100 == 5) {
				t.Fatalf("permanent %v for %v", o.Permanent, o.Err)
			}
		}
	})
}

// TestProviderSTARTTLSDialogue: before TLS sealpost itself greets the
// provider and asks for STARTTLS; a provider that does not offer it, refuses
// it, or has plaintext injected behind its 220 (CVE-2011-0411) gets no
// message and no password.
func TestProviderSTARTTLSDialogue(t *testing.T) {
	tests := []struct {
		name      string
		ehlo      string // the reply to EHLO
		starttls  string // the reply to STARTTLS
		wantError string
	}{
		{"not offered", "250-provider.test\r\n250 AUTH PLAIN\r\n", "", errNoTLS.Error()},
		{"refused", "250-provider.test\r\n250 STARTTLS\r\n", "454 4.7.0 TLS not available\r\n", "454 4.7.0 TLS not available"},
		{"plaintext injected after the 220", "250-provider.test\r\n250 STARTTLS\r\n", "220 go ahead\r\n250 injected\r\n", "data before the TLS handshake"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				r := bufio.NewReader(c)
				c.Write([]byte("220 provider.test ESMTP\r\n"))
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					switch strings.ToUpper(strings.TrimSpace(line)) {
					case "STARTTLS":
						// One write: the injected line arrives with the 220.
						c.Write([]byte(tt.starttls))
					case "QUIT":
						c.Write([]byte("221 bye\r\n"))
						return
					default:
						c.Write([]byte(tt.ehlo))
					}
				}
			}()
			pki := testutil.NewPKI(t)
			conf, err := tlsconf.ClientTLS("localhost", pki.CAFile)
			if err != nil {
				t.Fatal(err)
			}
			u := NewUpstream(Config{Address: l.Addr().String(), TLS: StartTLS, TLSConfig: conf, Hello: "relay.test", Timeout: 5 * time.Second})
			a := &Login{Account: "t", Username: "therapist@provider.example", Password: "secret"}
			c, err := u.dial(context.Background(), a)
			if err == nil {
				c.close()
				t.Fatal("dialled a provider without TLS")
			}
			if !strings.Contains(describe(err), tt.wantError) {
				t.Errorf("error %q, want it to say %q", err, tt.wantError)
			}
		})
	}
}
