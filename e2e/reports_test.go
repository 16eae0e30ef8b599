package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/sealpost/sealpost/archive/ingest"
	"github.com/sealpost/sealpost/internal/testutil"
)

// strictProvider is Postfix as a provider that takes a therapist's login
// the way Microsoft 365 does: the envelope sender must be the login's own
// address (no null sender on submission), and so must the From header
// (554 5.2.252 SendAsDenied); it refuses one recipient for good.
func strictProvider(t *testing.T) *Postfix {
	t.Helper()
	dir := t.TempDir()
	openUp(dir)
	maps := map[string]string{
		"header_checks": "if /^From:/\n!/<?therapist@practice\\.example>?\\s*$/ REJECT 5.2.252 SendAsDenied; therapist@practice.example not allowed to send as this From\nendif\n",
		"login_maps":    "therapist@practice.example therapist@practice.example\n",
		"senders":       "<> 554 5.7.1 a null sender is not taken on submission\n",
		"recipients":    "gone@client.example 550 5.1.1 Recipient address rejected: User unknown\n",
	}
	for name, content := range maps {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return StartPostfix(t, PostfixOptions{SASL: true, Extra: []string{
		"smtpd_sender_login_maps = texthash:" + filepath.Join(dir, "login_maps"),
		"smtpd_sender_restrictions = reject_sender_login_mismatch, check_sender_access texthash:" + filepath.Join(dir, "senders"),
		"smtpd_recipient_restrictions = check_recipient_access texthash:" + filepath.Join(dir, "recipients") + ", permit_sasl_authenticated, reject",
		"header_checks = regexp:" + filepath.Join(dir, "header_checks"),
	}})
}

// providerRefuses checks that the provider refuses what sealpost used to
// send a report as: MAIL FROM:<>, and From: MAILER-DAEMON.
func providerRefuses(t *testing.T, p *Postfix) {
	t.Helper()
	base := []string{"--server", p.Addr(), "--tls", "--tls-ca-path", p.PKI.CAFile, "--auth", "PLAIN", "--auth-user", p.Username, "--auth-password", p.Password,
		"--to", "ok@client.example"}
	if out, ok := Swaks(t, append(base, "--from", "<>")...); ok || !strings.Contains(out, "null sender") {
		t.Fatalf("the provider took MAIL FROM:<> on a therapist's login:\n%s", out)
	}
	if out, ok := Swaks(t, append(base, "--from", From, "--header", "From: Mail Delivery System <MAILER-DAEMON@localhost>")...); ok || !strings.Contains(out, "SendAsDenied") {
		t.Fatalf("the provider took a foreign From on a therapist's login:\n%s", out)
	}
}

// TestDeliveryReportSentAsTheAccount: a message to a recipient the
// provider refuses for good ends in a report that reaches the therapist
// through a provider that refuses the null sender and any From but the
// login's own, as Microsoft 365 does: it goes from and to the account's
// own address, as "sealpost delivery report".
func TestDeliveryReportSentAsTheAccount(t *testing.T) {
	testutil.RequireTools(t, "swaks")
	p := strictProvider(t)
	providerRefuses(t, p)
	r := StartRelay(t, RelayOptions{Upstream: p})
	consentAll(t, r, "ok@client.example", "gone@client.example")
	if out, ok := Swaks(t, r.SwaksArgs("--to", "ok@client.example,gone@client.example", "--header", "Subject: Tuesday")...); !ok {
		t.Fatal(out)
	}
	var report SinkMessage
	testutil.WaitWithin(t, 60*time.Second, "the report at the provider's far side", func() bool {
		for _, m := range p.Sink.Messages(t) {
			if strings.Contains(m.Data, "Undelivered Mail Returned to Sender") {
				report = m
				return true
			}
		}
		return false
	})
	if report.From != From || len(report.To) != 1 || report.To[0] != From {
		t.Errorf("the report went from <%s> to %v; want from and to %s", report.From, report.To, From)
	}
	for _, want := range []string{"From: sealpost delivery report <" + From + ">", "gone@client.example", "550 5.1.1"} {
		if !strings.Contains(strings.ReplaceAll(report.Data, "=\r\n", ""), want) {
			t.Errorf("the report lacks %q:\n%s", want, report.Data)
		}
	}
	if strings.Contains(r.Logs.String(), "could not be delivered; dropped") {
		t.Errorf("the relay dropped a report:\n%s", r.Logs.String())
	}
}

// TestDeliveryReportIntoTheInbox: where sealpost reads the account's
// mailbox ([account.imap], Dovecot here), a report goes straight into its
// INBOX, flagged and unread, and not through the provider; putting it
// there again adds nothing.
func TestDeliveryReportIntoTheInbox(t *testing.T) {
	testutil.RequireTools(t, "swaks", "dovecot")
	p := strictProvider(t)
	d := StartDovecot(t, From, "imap-secret")
	r := StartRelay(t, RelayOptions{Upstream: p, Sections: d.AccountIMAPSection(t), Setup: func(r *Relay) { consentAll(t, r, "ok@client.example", "gone@client.example") }})
	if out, ok := Swaks(t, r.SwaksArgs("--to", "ok@client.example,gone@client.example", "--header", "Subject: Tuesday")...); !ok {
		t.Fatal(out)
	}
	var uid imap.UID
	var raw []byte
	testutil.WaitWithin(t, 60*time.Second, "the report in the INBOX", func() bool {
		uid, raw = findReport(t, d)
		return uid != 0
	})
	if flags := fmt.Sprint(d.Flags(t, "INBOX")[uid]); !strings.Contains(flags, `\Flagged`) || strings.Contains(flags, `\Seen`) {
		t.Errorf("the report's flags are %s; want \\Flagged and not \\Seen", flags)
	}
	for _, want := range []string{"From: sealpost delivery report <" + From + ">", "gone@client.example", "550 5.1.1"} {
		if !strings.Contains(strings.ReplaceAll(string(raw), "=\r\n", ""), want) {
			t.Errorf("the report lacks %q:\n%s", want, raw)
		}
	}
	for _, m := range p.Sink.Messages(t) {
		if strings.Contains(m.Data, "Undelivered Mail Returned to Sender") {
			t.Errorf("the report also went through the provider")
		}
	}

	// Made again (a restart between queuing and recording it): one copy.
	id := regexp.MustCompile(`(?mi)^Message-Id: <([^>]+)>`).FindSubmatch(raw)
	if id == nil || !strings.HasPrefix(string(id[1]), "sealpost-report.failed.") {
		t.Fatalf("the report's Message-ID: %q", id)
	}
	pem, _ := os.ReadFile(d.PKI.CAFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	o := ingest.Options{Address: d.IMAPSAddr(), Implicit: true, TLSConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}, Username: From, Password: "imap-secret"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ingest.AppendReport(ctx, o, string(id[1]), raw); err != nil {
		t.Fatal(err)
	}
	if n := len(d.Flags(t, "INBOX")); n != 1 {
		t.Errorf("the INBOX holds %d messages after the report was put there twice, want 1", n)
	}
}

// findReport looks for the delivery report in the Dovecot user's INBOX.
func findReport(t *testing.T, d *Dovecot) (imap.UID, []byte) {
	t.Helper()
	c := d.Client(t)
	defer c.Close()
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		return 0, nil
	}
	for _, m := range msgs {
		b := m.FindBodySection(&imap.FetchItemBodySection{Peek: true})
		if strings.Contains(string(b), "Undelivered Mail Returned to Sender") {
			return m.UID, b
		}
	}
	return 0, nil
}
