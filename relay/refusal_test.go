package relay

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules"
)

// TestRefusalsCarryTheirReference: the reference in the reply a therapist
// reads is the one on the refusal's record in the archive, with the
// reason's code and the account; a message that goes on to DATA after a
// refused recipient is refused too, recorded under the same reference,
// and nothing of it is spooled.
func TestRefusalsCarryTheirReference(t *testing.T) {
	r := startRelay(t, relayOpts{})
	r.policy.decide = func(rcpt string) (record.Decision, error) {
		if strings.HasSuffix(rcpt, "@client.example") {
			return record.Decision{Address: rcpt, Protection: record.Refused, RefusalCode: rules.RefusalConsentRevoked,
				Reason: "<" + rcpt + "> withdrew consent to unencrypted email on 2026-03-02, and no passphrase or encryption key is on file; ask your admin how to reach them now"}, nil
		}
		return record.Decision{Address: rcpt, Protection: record.Internal}, nil
	}
	c := r.login(t)
	c.Mail(testFrom, nil)
	if err := c.Rcpt("colleague@practice.example", nil); err != nil {
		t.Fatal(err)
	}
	err := c.Rcpt("carol@client.example", nil)
	ref := regexp.MustCompile(`\(ref ([2-9A-Z]{6})\)$`).FindStringSubmatch(errText(err))
	if smtpCode(err) != "550 5.7.1" || ref == nil || !strings.HasPrefix(errText(err), "Nothing was sent to anybody. <carol@client.example> withdrew consent") {
		t.Fatalf("RCPT: %v; want the reason and a reference", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(testMessage(testFrom, "colleague@practice.example, carol@client.example", "s", "hello")))
	if err := w.Close(); smtpCode(err) != "550 5.7.1" || !strings.Contains(errText(err), "<carol@client.example> (ref "+ref[1]+") was refused") {
		t.Fatalf("DATA after a refused recipient: %v", err)
	}
	got := r.archive.Refusals
	if len(got) != 2 || got[0].Ref != ref[1] || got[0].Code != rules.RefusalConsentRevoked || got[0].Account != testUser || got[0].Recipient != "carol@client.example" ||
		got[1].Ref != ref[1] || got[1].Code != rules.RefusalPartialSend || got[1].Recipient != "" {
		t.Fatalf("archived refusals %+v", got)
	}
	if len(r.Queue()) != 0 {
		t.Fatal("the message was queued for the colleague")
	}
	if logs := r.logs.String(); !strings.Contains(logs, "ref="+ref[1]) || strings.Contains(logs, "carol@") {
		t.Errorf("the log lacks the reference, or names the client:\n%s", logs)
	}
}

// errText is the text of the SMTP reply err carries.
func errText(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Message
	}
	return ""
}

// TestPartialSendRecordsWhoWasLeftOut: with partial sends allowed, the
// message's record names the recipient refused at RCPT with the refusal's
// reference, so an auditor finds from the message who did not get it.
func TestPartialSendRecordsWhoWasLeftOut(t *testing.T) {
	r := startRelay(t, relayOpts{})
	r.SetPartialSends(true)
	r.policy.decide = func(rcpt string) (record.Decision, error) {
		if strings.HasSuffix(rcpt, "@client.example") {
			return record.Decision{Address: rcpt, Protection: record.Refused, RefusalCode: rules.RefusalNothingOnFile,
				Reason: "<" + rcpt + "> has nothing on file"}, nil
		}
		return record.Decision{Address: rcpt, Protection: record.Internal}, nil
	}
	c := r.login(t)
	c.Mail(testFrom, nil)
	if err := c.Rcpt("colleague@practice.example", nil); err != nil {
		t.Fatal(err)
	}
	err := c.Rcpt("carol@client.example", nil)
	ref := regexp.MustCompile(`\(ref ([2-9A-Z]{6})\)`).FindStringSubmatch(errText(err))
	if ref == nil {
		t.Fatalf("RCPT: %v; want a refusal with a reference", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(testMessage(testFrom, "colleague@practice.example, carol@client.example", "s", "hello")))
	if err := w.Close(); err != nil {
		t.Fatalf("DATA with partial sends allowed: %v", err)
	}
	if len(r.archive.Messages) != 1 {
		t.Fatalf("%d messages archived, want 1", len(r.archive.Messages))
	}
	got := r.archive.Messages[0].Refused
	if len(got) != 1 || got[0].Address != "carol@client.example" || got[0].Ref != ref[1] {
		t.Fatalf("the message's record names %+v as left out; want carol@client.example with ref %s", got, ref[1])
	}
}
