package relay

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules"
)

func TestSubmit(t *testing.T) {
	r := startRelay(t, relayOpts{})
	r.policy.decide = func(rcpt string) (record.Decision, error) {
		n, _ := addr.Normalize(rcpt)
		if strings.HasPrefix(n, "stranger") {
			return record.Decision{Address: n, Protection: record.Refused, Reason: "<" + n + ">: no consent"}, nil
		}
		return record.Decision{Address: n, Protection: record.Consented}, nil
	}
	msg := "From: " + testFrom + "\r\nTo: client@example.org\r\nSubject: Your message was received\r\nAuto-Submitted: no\r\n\r\nThank you.\r\n"
	ctx := context.Background()
	id, err := r.Submit(ctx, testUser, testFrom, []string{"client@example.org"}, strings.NewReader(msg))
	if err != nil || id == "" {
		t.Fatalf("Submit: %q %v", id, err)
	}
	var files []string
	testutil.WaitFor(t, "the acknowledgement in the outbox", func() bool { files = outboxFiles(t, r.dataDir); return len(files) == 1 })
	if !strings.Contains(files[0], "\r\nAuto-Submitted: auto-replied\r\n") || strings.Contains(files[0], "Auto-Submitted: no") {
		t.Errorf("the acknowledgement is not marked auto-replied (RFC 3834):\n%s", files[0])
	}
	if len(r.archive.Messages) != 1 || r.archive.Messages[0].ID != id {
		t.Errorf("archive has %+v", r.archive.Messages)
	}

	tests := []struct {
		name, account, from, to string
		want                    func(error) bool
	}{
		{"refused recipient", testUser, testFrom, "stranger@example.org", func(err error) bool {
			var ref *rules.Refusal
			return errors.As(err, &ref) && strings.Contains(ref.Reason, "no consent")
		}},
		{"unknown account", "nobody", testFrom, "client@example.org", func(err error) bool { return errors.Is(err, errUnknownAccount) }},
		{"address not the account's", testUser, "boss@practice.example", "client@example.org", func(err error) bool {
			return err != nil && strings.Contains(err.Error(), "not an address of account")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Submit(ctx, tt.account, tt.from, []string{tt.to}, strings.NewReader(msg))
			if !tt.want(err) {
				t.Errorf("err = %v", err)
			}
		})
	}
	if n := len(r.archive.Refusals); n != 1 {
		t.Errorf("%d refusals archived, want 1", n)
	}
}
