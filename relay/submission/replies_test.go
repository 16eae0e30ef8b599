package submission

import (
	"crypto/tls"
	"net/textproto"
	"strings"
	"testing"

	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules"
)

// decideByDomain decides as the rules would for a few kinds of recipient:
// colleagues internal, key holders encrypted, anyone at nobody.example
// refused with what a therapist reads.
func decideByDomain(rcpt string) (record.Decision, error) {
	switch {
	case strings.HasSuffix(rcpt, "@practice.example"):
		return record.Decision{Protection: record.Internal}, nil
	case strings.HasSuffix(rcpt, "@keys.example"):
		return record.Decision{Protection: record.Encrypted}, nil
	case strings.HasSuffix(rcpt, "@clinic.example"):
		return record.Decision{Protection: record.Professional}, nil
	}
	return record.Decision{Protection: record.Refused, RefusalCode: rules.RefusalNothingOnFile,
		Reason: "<" + rcpt + "> has no passphrase, encryption key or written consent to unencrypted email on file; ask your admin to record one"}, nil
}

// TestSoberReplies: on the wire, MAIL and RCPT are answered in sealpost's
// words, which say what was decided and promise no delivery; go-smtp's
// "Roger, accepting mail from" and "I'll make sure <x> gets this" never
// reach a client, on either port.
func TestSoberReplies(t *testing.T) {
	r := startServer(t, serverOpts{})
	r.relay.decide = decideByDomain
	for _, port := range []string{"starttls", "implicit"} {
		t.Run(port, func(t *testing.T) {
			cmd := loggedIn(t, r).Cmd
			if port == "implicit" {
				cmd = loggedInImplicit(t, r)
			}
			tests := []struct{ cmd, want string }{
				{"MAIL FROM:<" + testFrom + ">", "2.1.0 Sender <" + testFrom + "> OK"},
				{"RCPT TO:<colleague@practice.example>", "2.1.5 Recipient <colleague@practice.example> OK: a colleague inside the practice"},
				{"RCPT TO:<anna@keys.example>", "2.1.5 Recipient <anna@keys.example> OK: to be encrypted with their OpenPGP key"},
				{"RCPT TO:<lee@clinic.example>", "2.1.5 Recipient <lee@clinic.example> OK: unencrypted, to a professional recipient on file"},
				{"RCPT TO:<Anna@keys.example>", "2.1.5 Recipient <anna@keys.example> OK: already named, it gets one copy"},
				{"RSET", "2.0.0 Session reset"},
				{"MAIL FROM:<second@practice.example>", "2.1.0 Sender <second@practice.example> OK"},
			}
			for _, tt := range tests {
				code, msg := cmd(tt.cmd)
				if code != 250 || msg != tt.want {
					t.Errorf("%s: %d %q, want 250 %q", tt.cmd, code, msg, tt.want)
				}
			}
		})
	}
}

// TestRefusalReply: a refused recipient's reply says that nothing was
// sent, the rules' reason, and the refusal's reference; the log line has
// the reference and the reason's code, never the address.
func TestRefusalReply(t *testing.T) {
	r := startServer(t, serverOpts{})
	r.relay.decide = decideByDomain
	s := loggedIn(t, r)
	s.Cmd("MAIL FROM:<" + testFrom + ">")
	code, msg := s.Cmd("RCPT TO:<carol@client.example>")
	want := "5.7.1 Nothing was sent to anybody. <carol@client.example> has no passphrase, encryption key or written consent to unencrypted email on file; ask your admin to record one (ref REF001)"
	if code != 550 || msg != want {
		t.Fatalf("reply %d %q\nwant 550 %q", code, msg, want)
	}
	if strings.Contains(msg, "sealpost ") || strings.HasSuffix(msg, ".") {
		t.Errorf("the therapist is told an admin's command, or a sentence the mail client cannot go on after: %q", msg)
	}
	logs := r.logs.String()
	if !strings.Contains(logs, "ref=REF001") || !strings.Contains(logs, "reason=nothing_on_file") || strings.Contains(logs, "carol@") {
		t.Errorf("log line without the reference and the code, or with the address:\n%s", logs)
	}
}

// TestPartialSendRefused: with one recipient accepted and one refused, a
// client that goes on to DATA (swaks, most programs but Thunderbird) is
// refused: nothing is taken in, and the refusal is recorded under the
// refused recipient's reference. With partial sends allowed the refused
// recipient's reply says only they were left out, and the message goes to
// the other.
func TestPartialSendRefused(t *testing.T) {
	msg := testMessage(testFrom, "colleague@practice.example, carol@client.example, dan@client.example", "partial", "Hello.")
	t.Run("refuse", func(t *testing.T) {
		r := startServer(t, serverOpts{})
		r.relay.decide = decideByDomain
		c := r.login(t)
		if err := c.Mail(testFrom, nil); err != nil {
			t.Fatal(err)
		}
		c.Rcpt("colleague@practice.example", nil)
		c.Rcpt("carol@client.example", nil)
		c.Rcpt("dan@client.example", nil)
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(msg))
		err = w.Close()
		want := "Nothing was sent to anybody, because <carol@client.example> (ref REF001), <dan@client.example> (ref REF002) were refused"
		if smtpCode(err) != "550 5.7.1" || !strings.Contains(err.Error(), want) {
			t.Fatalf("DATA: %v\nwant 550 5.7.1 %q", err, want)
		}
		if got := r.relay.accepted(); len(got) != 0 {
			t.Fatalf("the message was taken in for the accepted recipient: %d", len(got))
		}
		rec := r.relay.recorded()
		if len(rec) != 3 || rec[2].Code != rules.RefusalPartialSend || rec[2].Ref != "REF001" {
			t.Fatalf("recorded refusals %+v; want the two recipients', then the message's under REF001", rec)
		}
		// The session goes on: the next message, without them, is taken in.
		if err := send(c, testFrom, []string{"colleague@practice.example"}, msg); err != nil {
			t.Fatalf("the next message: %v", err)
		}
	})
	t.Run("refuse with BDAT", func(t *testing.T) {
		r := startServer(t, serverOpts{})
		r.relay.decide = decideByDomain
		s := loggedIn(t, r)
		s.Cmd("MAIL FROM:<" + testFrom + ">")
		s.Cmd("RCPT TO:<colleague@practice.example>")
		s.Cmd("RCPT TO:<carol@client.example>")
		first, rest := msg[:10], msg[10:]
		s.Text.PrintfLine("BDAT %d", len(first))
		s.Text.W.WriteString(first)
		s.Text.W.Flush()
		s.Expect(250)
		s.Text.PrintfLine("BDAT %d LAST", len(rest))
		s.Text.W.WriteString(rest)
		s.Text.W.Flush()
		if code, text := s.Read(); code != 550 || !strings.Contains(text, "because <carol@client.example> (ref REF001) was refused") {
			t.Fatalf("BDAT LAST: %d %s", code, text)
		}
		if len(r.relay.accepted()) != 0 {
			t.Fatal("the message was taken in")
		}
		if code, _ := s.Cmd("NOOP"); code != 250 {
			t.Fatal("session did not survive")
		}
	})
	t.Run("allow", func(t *testing.T) {
		r := startServer(t, serverOpts{})
		r.relay.decide = decideByDomain
		r.SetPartialSends(true)
		c := r.login(t)
		c.Mail(testFrom, nil)
		if err := c.Rcpt("colleague@practice.example", nil); err != nil {
			t.Fatal(err)
		}
		err := c.Rcpt("carol@client.example", nil)
		if smtpCode(err) != "550 5.7.1" || !strings.Contains(err.Error(), "Not sent to this recipient. <carol@client.example> has no passphrase") {
			t.Fatalf("RCPT: %v", err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(msg))
		if err := w.Close(); err != nil {
			t.Fatalf("end of data: %v", err)
		}
		if len(r.relay.accepted()) != 1 {
			t.Fatal("the message was not taken in for the colleague")
		}
	})
}

// loggedInImplicit logs in on the implicit-TLS port and returns a
// function that sends a command and reads its reply.
func loggedInImplicit(t *testing.T, r *testServer) func(string) (int, string) {
	t.Helper()
	c, err := tls.Dial("tcp", r.addrs.Submissions.String(), &tls.Config{RootCAs: r.pki.Pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	text := textproto.NewConn(c)
	cmd := func(line string) (int, string) {
		t.Helper()
		if err := text.PrintfLine("%s", line); err != nil {
			t.Fatal(err)
		}
		code, msg, err := text.ReadResponse(0)
		if err != nil && code == 0 {
			t.Fatal(err)
		}
		return code, msg
	}
	if code, msg, err := text.ReadResponse(220); err != nil {
		t.Fatalf("greeting: %d %s %v", code, msg, err)
	}
	cmd("EHLO client.test")
	if code, msg := cmd(authPlain); code != 235 {
		t.Fatalf("AUTH: %d %s", code, msg)
	}
	return cmd
}
