package provider

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// client is one connection to the provider. sealpost speaks the whole
// dialogue on it itself, from the greeting to QUIT, with one reader for
// the provider's replies: the message goes straight onto the TLS connection
// (sendBody), and what the provider said is never split between two parsers.
type client struct {
	conn    net.Conn // TLS applied (except NoTLS)
	isTLS   bool
	text    *textproto.Reader
	timeout time.Duration // for each command and reply
	// dataTimeout waits for the reply to the end of a message, which the
	// provider may take long over (twice timeout, as go-smtp's client).
	dataTimeout time.Duration
	// ext holds the EHLO keywords, as the provider wrote them, and their
	// parameters.
	ext                  map[string]string
	pipelining, eightBit bool
}

// maxReplyLine bounds one line of the provider's replies (RFC 5321 says
// 512; this is what go-smtp's client allows).
const maxReplyLine = 2000

func newClient(conn net.Conn, timeout time.Duration) *client {
	r := bufio.NewReader(&lineLimitReader{r: conn, limit: maxReplyLine})
	return &client{conn: conn, text: textproto.NewReader(r), timeout: timeout, dataTimeout: 2 * timeout}
}

// errNoTLS is a provider that stopped offering STARTTLS: the message waits
// rather than going out in clear.
var errNoTLS = errors.New("the provider did not offer STARTTLS; sealpost never sends in clear, will retry")

// dial connects, greets, starts TLS as configured and logs in.
func (u *Upstream) dial(ctx context.Context, l *Login) (*client, error) {
	var login sasl.Client
	if l != nil && l.Username != "" && l.SASL != nil {
		// Before connecting: a token refresh may take a while, and the
		// provider would be kept waiting with a connection open.
		c, err := l.SASL(ctx)
		if err != nil {
			return nil, fmt.Errorf("login to provider as %s: %w", l.Username, err)
		}
		login = c
	}
	d := net.Dialer{Timeout: u.cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", u.cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("connect to provider %s: %w", u.cfg.Address, err)
	}
	c, err := u.greet(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if l != nil && l.Username != "" {
		// go-sasl's PLAIN client would send the password over anything: check.
		if !c.isTLS {
			c.close()
			return nil, errors.New("refusing to send provider credentials without TLS")
		}
		if login == nil {
			login = sasl.NewPlainClient("", l.Username, l.Password)
		} else if ch, ok := login.(mechanismChooser); ok {
			ch.ChooseMechanism(strings.Fields(c.ext["AUTH"]))
		}
		if err := c.auth(login); err != nil {
			c.close()
			return nil, fmt.Errorf("login to provider as %s: %w", l.Username, err)
		}
	}
	_, c.pipelining = c.ext["PIPELINING"]
	_, c.eightBit = c.ext["8BITMIME"]
	return c, nil
}

// mechanismChooser is a login (Login.SASL's) that can speak more than one
// mechanism: it is told those the provider offers.
type mechanismChooser interface{ ChooseMechanism(offered []string) }

// greet reads the provider's greeting and says EHLO, inside TLS: after an
// implicit-TLS handshake, or after STARTTLS, which is insisted on (errNoTLS,
// retried later, if it is not offered). The dialogue before TLS and the
// handshake share one timeout.
func (u *Upstream) greet(ctx context.Context, conn net.Conn) (*client, error) {
	addr := u.cfg.Address
	conn.SetDeadline(time.Now().Add(u.cfg.Timeout))
	defer conn.SetDeadline(time.Time{})
	if u.cfg.TLS == ImplicitTLS {
		tc := tls.Client(conn, u.cfg.TLSConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("TLS with provider %s: %w", addr, err)
		}
		conn = tc
	}
	c := newClient(conn, u.cfg.Timeout)
	c.isTLS = u.cfg.TLS == ImplicitTLS
	if _, _, err := c.reply(220); err != nil {
		return nil, fmt.Errorf("greeting from provider %s: %w", addr, err)
	}
	if err := c.hello(u.cfg.Hello); err != nil {
		return nil, fmt.Errorf("greeting from provider %s: %w", addr, err)
	}
	if u.cfg.TLS != StartTLS {
		return c, nil
	}
	if _, offered := c.ext["STARTTLS"]; !offered {
		return nil, errNoTLS
	}
	if _, _, err := c.exchange(220, "STARTTLS"); err != nil {
		return nil, fmt.Errorf("STARTTLS with provider %s: %w", addr, err)
	}
	// Anything that arrived after the 220 and before the handshake was
	// written by someone in the middle, in clear (CVE-2011-0411).
	if c.text.R.Buffered() > 0 {
		return nil, fmt.Errorf("STARTTLS with provider %s: data before the TLS handshake, refusing the connection", addr)
	}
	tc := tls.Client(conn, u.cfg.TLSConfig)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS with provider %s: %w", addr, err)
	}
	// RFC 3207: what the provider offered before TLS is forgotten, and EHLO
	// is said again inside it, with a timeout of its own.
	c = newClient(tc, u.cfg.Timeout)
	c.isTLS = true
	tc.SetDeadline(time.Now().Add(u.cfg.Timeout))
	if err := c.hello(u.cfg.Hello); err != nil {
		return nil, fmt.Errorf("greeting from provider %s: %w", addr, err)
	}
	return c, nil
}

// hello says EHLO and keeps the extensions offered; a provider that does
// not know EHLO gets HELO and is taken to offer none. The caller sets the
// deadline.
func (c *client) hello(name string) error {
	_, msg, err := c.exchange(250, "EHLO "+name)
	if code := replyCode(err); code == 500 || code == 502 {
		c.ext = nil
		_, _, err = c.exchange(250, "HELO "+name)
		return err
	}
	if err != nil {
		return err
	}
	c.ext = map[string]string{}
	lines := strings.Split(msg, "\n")
	for _, line := range lines[1:] {
		keyword, param, _ := strings.Cut(line, " ")
		c.ext[strings.ToUpper(keyword)] = param
	}
	return nil
}

// auth logs in with a SASL client: the initial response on the AUTH line
// ("=" when empty), then a response to every 334 challenge until 235. An
// exchange sealpost cannot go on with is cancelled with "*" (RFC 4954).
func (c *client) auth(a sasl.Client) error {
	mech, resp, err := a.Start()
	if err != nil {
		return err
	}
	line := "AUTH " + mech
	if len(resp) > 0 {
		line += " " + base64.StdEncoding.EncodeToString(resp)
	} else if resp != nil {
		line += " ="
	}
	code, msg, err := c.cmd(0, line)
	for err == nil {
		switch code {
		case 235:
			return nil
		case 334:
		default:
			return toSMTPError(code, msg)
		}
		var challenge []byte
		if challenge, err = base64.StdEncoding.DecodeString(msg); err == nil {
			resp, err = a.Next(challenge)
		}
		if err != nil {
			c.cmd(0, "*")
			return err
		}
		code, msg, err = c.cmd(0, base64.StdEncoding.EncodeToString(resp))
	}
	return err
}

// cmd sends one command and reads its reply, within the command timeout.
func (c *client) cmd(expect int, line string) (int, string, error) {
	c.conn.SetDeadline(time.Now().Add(c.timeout))
	defer c.conn.SetDeadline(time.Time{})
	return c.exchange(expect, line)
}

// exchange sends one command and reads its reply, within the deadline the
// caller set.
func (c *client) exchange(expect int, line string) (int, string, error) {
	if err := c.send(line); err != nil {
		return 0, "", err
	}
	return c.reply(expect)
}

// send writes commands in one write.
func (c *client) send(cmds ...string) error {
	var b []byte
	for _, cmd := range cmds {
		b = append(append(b, cmd...), "\r\n"...)
	}
	if _, err := c.conn.Write(b); err != nil {
		return fmt.Errorf("send to provider: %w", err)
	}
	return nil
}

// reply reads the provider's reply: an *smtp.SMTPError unless its code is
// the one expected (a one- or two-digit expect is a prefix; 0 takes any).
func (c *client) reply(expect int) (int, string, error) {
	code, msg, err := c.text.ReadResponse(expect)
	var te *textproto.Error
	if errors.As(err, &te) {
		return code, msg, toSMTPError(te.Code, te.Msg)
	}
	return code, msg, err
}

// toSMTPError is a reply as the *smtp.SMTPError the rest of the relay
// reads codes from; RFC 2034's enhanced code, when there is one, leaves the
// text, on every line of a multi-line reply.
func toSMTPError(code int, msg string) *smtp.SMTPError {
	se := &smtp.SMTPError{Code: code, Message: msg}
	first, rest, ok := strings.Cut(msg, " ")
	if !ok {
		return se
	}
	var ec smtp.EnhancedCode
	if n, _ := fmt.Sscanf(first, "%d.%d.%d", &ec[0], &ec[1], &ec[2]); n != 3 {
		return se
	}
	se.EnhancedCode = ec
	se.Message = strings.ReplaceAll(rest, "\n"+first+" ", "\n")
	return se
}

// replyCode is the code of the provider's reply err carries, 0 when err is
// no reply (a network or TLS failure, a timeout).
func replyCode(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func isSMTPReply(err error) bool { return replyCode(err) != 0 }

// isPermanent: only a 5xx reply from the provider is final. Network and TLS
// failures, timeouts and 4xx are retried.
func isPermanent(err error) bool { return replyCode(err)/100 == 5 }

// quit says goodbye and closes the connection.
func (c *client) quit() error {
	_, _, err := c.cmd(221, "QUIT")
	if cerr := c.conn.Close(); err == nil {
		err = cerr
	}
	return err
}

func (c *client) close() error { return c.conn.Close() }

// lineLimitReader fails a reply line longer than limit: a provider that
// never ends its line would fill the memory.
type lineLimitReader struct {
	r       io.Reader
	limit   int
	lineLen int
}

var errLongReply = errors.New("a reply line from the provider is too long")

func (l *lineLimitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	for _, b := range p[:n] {
		if b == '\n' {
			l.lineLen = 0
			continue
		}
		if l.lineLen++; l.lineLen > l.limit {
			return 0, errLongReply
		}
	}
	return n, err
}
