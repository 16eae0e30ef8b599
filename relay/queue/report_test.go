package queue

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/relay/internal/relaytest"
	"github.com/sealpost/sealpost/relay/provider"
	"github.com/sealpost/sealpost/rules"
)

// putCall is one delivery report handed to the ReportInbox.
type putCall struct {
	account, messageID, report string
}

// TestDeliveryReportReachesTheTherapist: a bounce goes to the account's
// own INBOX where its mailbox is read (and not to the provider), with a
// Message-ID made from the message and the kind of report; where it is
// not read, or the INBOX cannot be reached, the report is sent as the
// account itself: its own address in MAIL FROM and From, never the null
// sender or MAILER-DAEMON, which Microsoft 365 and others refuse on a
// therapist's login.
func TestDeliveryReportReachesTheTherapist(t *testing.T) {
	for _, tt := range []struct {
		name     string
		inbox    bool  // a ReportInbox is set
		handled  bool  // it reads this account's mailbox
		err      error // what the APPEND says
		wantSMTP bool
	}{
		{name: "the account's mailbox is read", inbox: true, handled: true},
		{name: "no mailbox read for the account", inbox: true, handled: false, wantSMTP: true},
		{name: "the INBOX cannot be reached", inbox: true, handled: true, err: errors.New("dial tcp: connection refused"), wantSMTP: true},
		{name: "no mailbox reader at all", wantSMTP: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dlv := &scriptedDlv{reply: func(body, rcpt string) *provider.Outcome {
				if rcpt == rcpt1 {
					return &provider.Outcome{Err: errors.New("550"), Permanent: true, Reply: "550 5.1.1 <r1@client.example>: no such user"}
				}
				return nil
			}}
			q, sp := newTestQueue(t, dlv, &relaytest.Archive{}, 1, nil)
			var mu sync.Mutex
			var puts []putCall
			if tt.inbox {
				q.SetReportInbox(func(ctx context.Context, account, messageID string, report []byte) (bool, error) {
					mu.Lock()
					defer mu.Unlock()
					puts = append(puts, putCall{account, messageID, string(report)})
					return tt.handled, tt.err
				})
			}
			e := spoolMessage(t, sp, rules.Copy{Name: "m", Recipients: []string{rcpt1}, Protection: record.Internal})
			q.add(e)
			testutil.WaitFor(t, "the queue to empty", func() bool { return len(q.List()) == 0 })

			wantID := "sealpost-report.failed." + e.meta.ID + "@relay.test"
			var smtp []sentCopy
			dlv.mu.Lock()
			for _, s := range dlv.sent {
				if strings.Contains(s.body, "multipart/report") {
					smtp = append(smtp, s)
				}
			}
			dlv.mu.Unlock()
			mu.Lock()
			defer mu.Unlock()
			if tt.inbox && (len(puts) != 1 || puts[0].account != testUser || puts[0].messageID != wantID || !strings.Contains(puts[0].report, "Final-Recipient: rfc822; "+rcpt1)) {
				t.Errorf("the INBOX was given %+v; want one report from %s with Message-ID %s", puts, testUser, wantID)
			}
			if !tt.wantSMTP {
				if len(smtp) != 0 {
					t.Errorf("the report put into the INBOX was also sent to the provider")
				}
				return
			}
			if len(smtp) != 1 {
				t.Fatalf("%d reports sent to the provider, want 1", len(smtp))
			}
			r := smtp[0]
			if r.from != testFrom || len(r.rcpts) != 1 || r.rcpts[0] != testFrom {
				t.Errorf("the report went from <%s> to %v; want from and to the account's own address %s", r.from, r.rcpts, testFrom)
			}
			for _, want := range []string{"From: sealpost delivery report <" + testFrom + ">\r\n", "To: <" + testFrom + ">\r\n", "Message-Id: <" + wantID + ">\r\n"} {
				if !strings.Contains(r.body, want) {
					t.Errorf("the report lacks %q:\n%s", want, r.body)
				}
			}
			if strings.Contains(r.body, "MAILER-DAEMON") {
				t.Errorf("the report still names MAILER-DAEMON:\n%s", r.body)
			}
		})
	}
}
