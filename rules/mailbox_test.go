package rules

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/sealpost/sealpost/internal/testutil"
)

type fakeClientKeys struct {
	has     map[string]bool
	err     error
	offered []bool // the use flag of every TakeOffered
}

func (k *fakeClientKeys) Has(_ context.Context, address string) (bool, error) {
	return k.has[address], k.err
}

func (k *fakeClientKeys) TakeOffered(_ context.Context, h textproto.Header, from string, use bool) ([]OfferedKey, error) {
	if !h.Has("Autocrypt") {
		return nil, nil
	}
	k.offered = append(k.offered, use)
	return []OfferedKey{{Fingerprint: "ABCD", Status: "usable", Proposed: !use}}, nil
}

// sentMail records what a mailbox's acknowledgements send.
type sentMail struct {
	msgs []string
	err  error
}

func (s *sentMail) send(_ context.Context, account, from string, to []string, msg io.Reader) (string, error) {
	if s.err != nil {
		return "", s.err
	}
	b, _ := io.ReadAll(msg)
	s.msgs = append(s.msgs, account+" "+from+" -> "+strings.Join(to, ",")+"\n"+string(b))
	return "q1", nil
}

func newTestMailbox(t *testing.T, tp *testPolicy, keys *fakeClientKeys, mode AutocryptMode, reply *Autoreply, sent *sentMail, log io.Writer) *Mailbox {
	t.Helper()
	m, err := NewMailbox(MailboxConfig{Account: "therapist", Policy: tp.Policy,
		PracticeAddresses: []string{"Therapist@Provider.example", "not an address"},
		Keys:              keys, Acknowledgements: tp.reg, Autocrypt: mode, Autoreply: reply, Send: sent.send,
		Logger: slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Redact: func(string) string { return "h:client" }, Now: func() time.Time { return tp.now }})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMailboxClassify: the record keeps a client's message, and the
// practice's to clients (only the clients named); the practice's own
// addresses are its accounts' and its internal domains', normalised as
// Decide normalises them (an internal domain written as Unicode matches
// the A-label an address is normalised to).
func TestMailboxClassify(t *testing.T) {
	ctx := context.Background()
	tp := newTestPolicy(t)
	tp.consent(t, "anna@client.example", "2026-01-10", "")
	tp.consent(t, "ben@client.example", "2026-01-10", "")
	if _, err := tp.reg.Revoke(ctx, "ben@client.example", "asked", "admin"); err != nil {
		t.Fatal(err)
	}
	keys := &fakeClientKeys{has: map[string]bool{"keyholder@client.example": true}}
	m := newTestMailbox(t, tp, keys, AutocryptPropose, nil, &sentMail{}, io.Discard)

	for a, want := range map[string]bool{"therapist@provider.example": true, "THERAPIST@provider.EXAMPLE": true,
		"colleague@Practice.example": true, "anna@bücher.example": true, "anna@xn--bcher-kva.example": true,
		"anna@client.example": false, "therapist@provider.example.org": false, "not an address": false} {
		if got := m.IsPractice(a); got != want {
			t.Errorf("IsPractice(%q) = %v, want %v", a, got, want)
		}
	}
	tests := []struct {
		name     string
		from     []string
		rcpts    []string
		want     Correspondence
		inRecord bool
	}{
		{"from a client", []string{"Anna@Client.example"}, []string{"therapist@provider.example"},
			Correspondence{From: "anna@client.example", Clients: []string{"anna@client.example"}, FromClient: true}, true},
		{"from a client who revoked consent", []string{"ben@client.example"}, nil,
			Correspondence{From: "ben@client.example", Clients: []string{"ben@client.example"}, FromClient: true}, true},
		{"from a key holder", []string{"not an address", "keyholder@client.example"}, nil,
			Correspondence{From: "keyholder@client.example", Clients: []string{"keyholder@client.example"}, FromClient: true}, true},
		{"from a stranger", []string{"news@shop.example"}, []string{"therapist@provider.example"},
			Correspondence{From: "news@shop.example"}, false},
		{"from nobody", []string{"not an address"}, nil, Correspondence{}, false},
		{"from the practice to clients", []string{"therapist@provider.example"},
			[]string{"anna@client.example", "news@shop.example", "colleague@practice.example", "Keyholder@client.example"},
			Correspondence{From: "therapist@provider.example", Clients: []string{"anna@client.example", "keyholder@client.example"}}, true},
		{"from a colleague to nobody of the record", []string{"colleague@practice.example"}, []string{"news@shop.example"},
			Correspondence{From: "colleague@practice.example"}, false},
	}
	for _, tt := range tests {
		got, err := m.Classify(ctx, tt.from, tt.rcpts)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !reflect.DeepEqual(got, tt.want) || (len(got.Clients) > 0) != tt.inRecord {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}

	keys.err = ErrUnavailable
	if _, err := m.Classify(ctx, []string{"stranger@client.example"}, nil); !errors.Is(err, ErrUnavailable) {
		t.Errorf("keyring down: %v, want ErrUnavailable", err)
	}
	keys.err = nil
	tp.reg.Close()
	if _, err := m.Classify(ctx, []string{"therapist@provider.example"}, []string{"anna@client.example"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("registry down: %v, want ErrUnavailable", err)
	}
}

// TestMailboxClientWrote: a key in a client's Autocrypt header is used,
// proposed or ignored as pgp.autocrypt says; a client gets one
// acknowledgement per period, sent as the account, and none for what
// RFC 3834 says not to answer; a refused or failed one is not noted, and
// the log names no client.
func TestMailboxClientWrote(t *testing.T) {
	ctx := context.Background()
	offer := func(extra ...string) textproto.Header {
		var h textproto.Header
		h.Set("Message-Id", "<m1@client.example>")
		h.Set("Autocrypt", "addr=anna@client.example; keydata=AAAA")
		for i := 0; i+1 < len(extra); i += 2 {
			h.Set(extra[i], extra[i+1])
		}
		return h
	}
	for mode, want := range map[AutocryptMode][]bool{AutocryptUse: {true}, AutocryptPropose: {false}, AutocryptIgnore: nil} {
		keys := &fakeClientKeys{}
		var log bytes.Buffer
		newTestMailbox(t, newTestPolicy(t), keys, mode, nil, &sentMail{}, &log).ClientWrote(ctx, offer(), "anna@client.example")
		if !reflect.DeepEqual(keys.offered, want) {
			t.Errorf("autocrypt %s: offered keys taken %v, want %v", mode, keys.offered, want)
		}
		if mode == AutocryptPropose && !strings.Contains(log.String(), "sealpost keys accept FINGERPRINT") {
			t.Errorf("a proposed key is not logged with what to run:\n%s", log.String())
		}
	}

	tp := newTestPolicy(t)
	sent := &sentMail{}
	var log testutil.LockedBuffer
	reply := &Autoreply{Every: 7 * 24 * time.Hour, From: "therapist@provider.example", Subject: "Received", Text: "In a crisis call 988."}
	m := newTestMailbox(t, tp, &fakeClientKeys{}, AutocryptIgnore, reply, sent, &log)
	m.ClientWrote(ctx, offer(), "anna@client.example")
	if len(sent.msgs) != 1 || !strings.HasPrefix(sent.msgs[0], "therapist therapist@provider.example -> anna@client.example\n") ||
		!strings.Contains(sent.msgs[0], "In-Reply-To: <m1@client.example>") || !strings.Contains(sent.msgs[0], "988") {
		t.Fatalf("acknowledgement: %q", sent.msgs)
	}
	tp.now = tp.now.Add(6 * 24 * time.Hour)
	m.ClientWrote(ctx, offer(), "anna@client.example")
	m.ClientWrote(ctx, offer("Precedence", "bulk"), "ben@client.example")
	m.ClientWrote(ctx, offer(), "colleague@practice.example")
	if len(sent.msgs) != 1 {
		t.Fatalf("%d acknowledgements; within the period, to bulk mail and to the practice none", len(sent.msgs))
	}
	tp.now = tp.now.Add(2 * 24 * time.Hour)
	m.ClientWrote(ctx, offer(), "anna@client.example")
	if len(sent.msgs) != 2 {
		t.Fatalf("%d acknowledgements; the period is over", len(sent.msgs))
	}

	sent.err = &Refusal{Reason: "<carl@client.example>: no consent on file", Recipient: true}
	m.ClientWrote(ctx, offer(), "carl@client.example")
	sent.err = errors.New("spool full")
	m.ClientWrote(ctx, offer(), "dora@client.example")
	for _, c := range []string{"carl@client.example", "dora@client.example"} {
		if last, err := tp.reg.LastAcknowledgement(ctx, "therapist", c); err != nil || !last.IsZero() {
			t.Errorf("%s: an acknowledgement that did not go is noted (%v, %v)", c, last, err)
		}
	}
	if strings.Contains(log.String(), "@client.example") {
		t.Errorf("the log names a client:\n%s", log.String())
	}
}
