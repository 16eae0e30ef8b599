package submission

import (
	"bytes"
	"crypto/tls"
	"errors"
	"strings"
	"time"

	"github.com/sealpost/sealpost/internal/textutil"
)

// Limits of the plaintext dialogue before STARTTLS (a mail client needs two
// or three commands and a moment).
const (
	maxPreTLSCommands = 20
	maxPreTLSTime     = time.Minute
	// maxPreTLSLine bounds a command line before TLS: longer than RFC
	// 5321's 512 octets is answered 500; this much without a line end
	// closes the session.
	maxPreTLSLine = 4096
)

var (
	// errPreTLSEnded ends a session that quit or failed before TLS.
	errPreTLSEnded = errors.New("session ended before TLS")
	errLineTooLong = errors.New("command line too long")
)

// beforeTLS is the session on the submission port until STARTTLS has
// succeeded: sealpost's greeting, EHLO, STARTTLS, and a refusal for
// everything else. It returns nil with f.sec set, or why the session ended.
func (f *wire) beforeTLS() error {
	if err := f.say(replyGreeting.with(f.cfg.hostname)); err != nil {
		return err // an early talker, or gone
	}
	f.preTLSUntil = time.Now().Add(min(f.cfg.timeout, maxPreTLSTime))
	refusals := 0
	for commands := 0; ; commands++ {
		if commands >= maxPreTLSCommands {
			f.cfg.metrics.refused.WithLabelValues("command", replyTooManyBeforeTLS.reason).Inc()
			f.say(replyTooManyBeforeTLS)
			return errPreTLSEnded
		}
		line, err := f.preTLSLine()
		if errors.Is(err, errLineTooLong) {
			f.say(replyEndlessLineBefore)
			return err
		}
		if err != nil {
			return err
		}
		r, stage := f.answerBeforeTLS(line)
		switch {
		case r == replyStartTLS:
			return f.startTLS()
		case r == replyBye:
			f.say(r)
			return errPreTLSEnded
		case stage != "":
			f.cfg.metrics.refused.WithLabelValues(stage, r.reason).Inc()
			if refusals++; refusals >= maxSessionErrors {
				f.say(replyTooManyErrors)
				return errPreTLSEnded
			}
		}
		if err := f.say(r); err != nil {
			return err
		}
	}
}

// answerBeforeTLS is the reply to one command line before TLS, and for a
// refusal (counted towards maxSessionErrors) the stage it counts under.
func (f *wire) answerBeforeTLS(line string) (r *reply, refusedAt string) {
	verb, arg, _ := strings.Cut(line, " ")
	arg = strings.TrimSpace(arg)
	hello := strings.EqualFold(verb, "EHLO") || strings.EqualFold(verb, "HELO")
	switch {
	case len(line)+2 > maxCommandLine && hello:
		return replyLongCommand, "ehlo"
	case len(line)+2 > maxCommandLine:
		return replyLongCommand, "command"
	case hello && arg == "":
		return replyHelloArgument, "command"
	case strings.EqualFold(verb, "EHLO"):
		return replyEHLOBeforeTLS.with(f.cfg.hostname, textutil.OneLine(arg), f.cfg.maxSize), ""
	case strings.EqualFold(verb, "HELO"):
		return replyHELO.with(f.cfg.hostname, textutil.OneLine(arg)), ""
	case strings.EqualFold(line, "STARTTLS"):
		return replyStartTLS, ""
	case strings.EqualFold(verb, "NOOP"):
		return replyNoop, ""
	case strings.EqualFold(line, "RSET"):
		return replyReset, ""
	case strings.EqualFold(line, "QUIT"):
		return replyBye, ""
	case strings.EqualFold(verb, "AUTH"):
		return replyNeedTLS, "auth"
	case strings.EqualFold(verb, "MAIL") || strings.EqualFold(verb, "RCPT"):
		// As inside TLS without a login.
		return replyAuthRequired, strings.ToLower(verb)
	}
	return replyTLSFirst, "command"
}

// startTLS answers STARTTLS and does the handshake.
func (f *wire) startTLS() error {
	if err := f.say(replyStartTLS); err != nil {
		return err
	}
	// Whatever the client sent behind STARTTLS was sent in clear and would
	// run inside TLS (CVE-2011-0411): dropped.
	f.r, f.w = 0, 0
	tc := tls.Server(f.socket, f.cfg.tls)
	if err := f.handshake(tc); err != nil {
		return err
	}
	f.sec = tc
	return nil
}

// say writes a reply before TLS.
func (f *wire) say(r *reply) error {
	f.socket.SetWriteDeadline(time.Now().Add(f.cfg.timeout))
	return r.write(f.socket)
}

// preTLSLine reads one command line from the socket, without its line end.
func (f *wire) preTLSLine() (string, error) {
	for {
		if i := bytes.IndexByte(f.buf[f.r:f.w], '\n'); i >= 0 {
			if i >= maxPreTLSLine {
				return "", errLineTooLong
			}
			line := f.buf[f.r : f.r+i]
			f.r += i + 1
			return string(bytes.TrimSuffix(line, []byte("\r"))), nil
		}
		if f.w-f.r >= maxPreTLSLine {
			return "", errLineTooLong
		}
		f.socket.SetReadDeadline(f.preTLSUntil)
		if err := f.fill(f.socket); err != nil {
			return "", err
		}
	}
}
