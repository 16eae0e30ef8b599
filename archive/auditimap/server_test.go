package auditimap

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"golang.org/x/crypto/bcrypt"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/internal/tlsconf"
	"github.com/sealpost/sealpost/record"
)

const (
	client    = "anna@client.example"
	colleague = "colleague@practice.example"
	// clientBoxName is the client's mailbox, in the folder of its initial.
	clientBoxName = "Clients/A/" + client
)

// recorded is one message written into the test archive.
type recorded struct {
	id, subject string
	time        time.Time
	body        []byte
}

type fixture struct {
	dataDir string
	arch    *archive.Archive
	now     time.Time
	mu      sync.Mutex
	msgs    []*recorded
}

func rfc822(from, to, subject, text string, t time.Time) []byte {
	return []byte(fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%d@test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n",
		from, to, subject, t.Format(time.RFC1123Z), t.UnixNano(), text))
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dataDir: t.TempDir(), now: time.Date(2026, 10, 30, 9, 0, 0, 0, time.UTC)}
	pub, _, err := archive.EnsureKey(f.dataDir, "")
	if err != nil {
		t.Fatal(err)
	}
	f.arch, err = archive.Open(archive.Options{Dir: filepath.Join(f.dataDir, "archive"), PublicKey: pub,
		Now: func() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.arch.Close() })
	return f
}

// outbound records a therapist's message to these recipients.
func (f *fixture) outbound(t *testing.T, id, subject, text string, at time.Time, to ...record.Decision) *recorded {
	t.Helper()
	var rcpts []string
	for _, d := range to {
		rcpts = append(rcpts, d.Address)
	}
	r := &recorded{id: id, subject: subject, time: at, body: rfc822("therapist@practice.example", strings.Join(rcpts, ", "), subject, text, at)}
	m := archive.Message{ID: id, Time: at, Direction: archive.Outbound, Account: "therapist", Sender: "therapist@practice.example", Decisions: to}
	if err := f.arch.RecordMessage(context.Background(), m, bytes.NewReader(r.body)); err != nil {
		t.Fatal(err)
	}
	f.msgs = append(f.msgs, r)
	return r
}

// inbound records a client's message found in the practice's mailbox.
func (f *fixture) inbound(t *testing.T, id, subject, text string, at time.Time) *recorded {
	t.Helper()
	r := &recorded{id: id, subject: subject, time: at, body: rfc822(client, "therapist@practice.example", subject, text, at)}
	m := archive.Message{ID: id, Time: at, Direction: archive.Inbound, Account: "therapist", Sender: client, Folder: "INBOX"}
	if err := f.arch.RecordMessage(context.Background(), m, bytes.NewReader(r.body)); err != nil {
		t.Fatal(err)
	}
	f.msgs = append(f.msgs, r)
	return r
}

func consented(a string) record.Decision {
	return record.Decision{Recipient: a, Address: a, Protection: record.Consented}
}

func internal(a string) record.Decision {
	return record.Decision{Recipient: a, Address: a, Protection: record.Internal}
}

// serve starts the view on 127.0.0.1:0 for the viewer auditor (password
// audit-pw) and returns its address and the CA to trust.
func (f *fixture) serve(t *testing.T, logs io.Writer) (addr string, clientTLS *tls.Config) {
	t.Helper()
	return f.serveViewers(t, logs, "auditor")
}

// serveViewers is serve with these viewers, each with the password audit-pw.
func (f *fixture) serveViewers(t *testing.T, logs io.Writer, viewers ...string) (addr string, clientTLS *tls.Config) {
	t.Helper()
	key, err := archive.LoadPrivateKey(filepath.Join(f.dataDir, archive.PrivateKeyFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	view, err := archive.OpenView(filepath.Join(f.dataDir, "archive"), key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(view.Close)
	certFile, keyFile, err := tlsconf.EnsureLocalCertificate(filepath.Join(f.dataDir, "tls"), "localhost", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	stc, err := tlsconf.ServerTLS(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ctc, err := tlsconf.ClientTLS("localhost", filepath.Join(f.dataDir, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte("audit-pw"), bcrypt.MinCost)
	var vs []Viewer
	for _, name := range viewers {
		vs = append(vs, Viewer{Username: name, PasswordHash: string(hash)})
	}
	srv := New(Options{View: view, Viewers: vs, TLS: stc,
		Logger: slog.New(slog.NewTextHandler(logs, nil)), UIDValidity: 7, RefreshEvery: time.Nanosecond})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(l); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return l.Addr().String(), ctc
}

func login(t *testing.T, addr string, tc *tls.Config) *imapclient.Client {
	t.Helper()
	return loginAs(t, addr, tc, "auditor")
}

func loginAs(t *testing.T, addr string, tc *tls.Config, viewer string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: tc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(viewer, "audit-pw").Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestView(t *testing.T) {
	f := newFixture(t)
	oct := time.Date(2026, 10, 30, 9, 0, 0, 0, time.UTC)
	nov := time.Date(2026, 11, 2, 14, 30, 0, 0, time.UTC)
	first := f.outbound(t, "q1", "Tuesday appointment", "See you on Tuesday.", oct, consented(client), internal(colleague))
	team := f.outbound(t, "q2", "Team meeting", "Agenda attached.", oct.Add(time.Hour), internal(colleague))
	reply := f.inbound(t, "i1", "Re: Tuesday appointment", "Tuesday is fine, thank you.", nov)
	logs := &testutil.LockedBuffer{}
	addr, tc := f.serve(t, logs)

	t.Run("login", func(t *testing.T) {
		c, err := imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: tc})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Login("auditor", "wrong").Wait(); err == nil {
			t.Fatal("a wrong password logged in")
		}
		if err := c.Login("nobody", "audit-pw").Wait(); err == nil {
			t.Fatal("an unknown user logged in")
		}
		// A password typed into the username field must not reach the log.
		if err := c.Login("Secret-Typed-As-User", "x").Wait(); err == nil {
			t.Fatal("an unknown user logged in")
		}
		if l := logs.String(); strings.Contains(l, "Secret-Typed-As-User") || !strings.Contains(l, "no such viewer") || !strings.Contains(l, "user=auditor") {
			t.Errorf("failed logins are logged wrong:\n%s", l)
		}
		// No plaintext: a client that does not speak TLS gets no greeting.
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		raw.Write([]byte("a LOGIN auditor audit-pw\r\n"))
		if b, _ := io.ReadAll(raw); bytes.Contains(b, []byte("OK")) {
			t.Fatalf("plaintext got %q", b)
		}
	})

	c := login(t, addr, tc)

	t.Run("list", func(t *testing.T) {
		boxes, err := c.List("", "*", nil).Collect()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, b := range boxes {
			got[b.Mailbox] = true
		}
		for _, want := range []string{"All", "Clients", "Clients/A", clientBoxName, "Months", "Months/2026-10", "Months/2026-11"} {
			if !got[want] {
				t.Errorf("LIST lacks %s: %v", want, got)
			}
		}
		for name := range got {
			if strings.Contains(name, colleague) {
				t.Errorf("a colleague has a client mailbox: %s", name)
			}
		}
		// A mail client walks the folders a level at a time: Clients holds
		// the initials' folders, which hold the clients' mailboxes.
		for _, tt := range []struct{ pattern, want string }{
			{"%", "All:[\\HasNoChildren] Clients:[\\Noselect \\HasChildren] Decisions:[\\HasNoChildren] INBOX:[\\HasNoChildren] Months:[\\Noselect \\HasChildren] Refused:[\\HasNoChildren]"},
			{"Clients/%", "Clients/A:[\\Noselect \\HasChildren]"},
			{"Clients/A/%", clientBoxName + ":[\\HasNoChildren]"},
		} {
			level, err := c.List("", tt.pattern, nil).Collect()
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, b := range level {
				names = append(names, fmt.Sprintf("%s:%v", b.Mailbox, b.Attrs))
			}
			if strings.Join(names, " ") != tt.want {
				t.Errorf("LIST \"\" %q: %v; want %s", tt.pattern, names, tt.want)
			}
		}
		st, err := c.Status(clientBoxName, &imap.StatusOptions{NumMessages: true, UIDValidity: true, NumUnseen: true}).Wait()
		if err != nil || *st.NumMessages != 2 || st.UIDValidity != 7 || *st.NumUnseen != 2 {
			t.Fatalf("STATUS %+v %v", st, err)
		}
	})

	mailboxes := []struct {
		name string
		want []*recorded // in mailbox order
	}{
		{clientBoxName, []*recorded{first, reply}},
		{"Months/2026-10", []*recorded{first, team}},
		{"Months/2026-11", []*recorded{reply}},
		{"All", []*recorded{first, team, reply}},
	}
	for _, mb := range mailboxes {
		t.Run("fetch "+mb.name, func(t *testing.T) {
			sel, err := c.Select(mb.name, &imap.SelectOptions{ReadOnly: true}).Wait()
			if err != nil {
				t.Fatal(err)
			}
			if int(sel.NumMessages) != len(mb.want) || len(sel.PermanentFlags) != 0 {
				t.Fatalf("EXAMINE: %d messages, permanent flags %v", sel.NumMessages, sel.PermanentFlags)
			}
			fetched, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{
				UID: true, Flags: true, Envelope: true, InternalDate: true, RFC822Size: true, BodyStructure: &imap.FetchItemBodyStructure{},
				BodySection: []*imap.FetchItemBodySection{{}, {Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}, Peek: true}},
			}).Collect()
			if err != nil {
				t.Fatal(err)
			}
			if len(fetched) != len(mb.want) {
				t.Fatalf("fetched %d, want %d", len(fetched), len(mb.want))
			}
			var lastUID imap.UID
			for i, m := range fetched {
				w := mb.want[i]
				if m.UID <= lastUID {
					t.Errorf("UIDs not ascending: %d after %d", m.UID, lastUID)
				}
				lastUID = m.UID
				var body, subj []byte
				for _, sec := range m.BodySection {
					if len(sec.Section.HeaderFields) > 0 {
						subj = sec.Bytes
					} else {
						body = sec.Bytes
					}
				}
				if !bytes.Equal(body, w.body) {
					t.Errorf("%s: BODY[] is not the archived message byte for byte:\n%q\nwant\n%q", w.id, body, w.body)
				}
				if m.RFC822Size != int64(len(w.body)) {
					t.Errorf("%s: RFC822.SIZE %d, want %d", w.id, m.RFC822Size, len(w.body))
				}
				if string(subj) != "Subject: "+w.subject+"\r\n\r\n" {
					t.Errorf("%s: BODY[HEADER.FIELDS (SUBJECT)] %q", w.id, subj)
				}
				if m.Envelope == nil || m.Envelope.Subject != w.subject {
					t.Errorf("%s: envelope %+v", w.id, m.Envelope)
				}
				if !m.InternalDate.Equal(w.time) {
					t.Errorf("%s: INTERNALDATE %v, want %v", w.id, m.InternalDate, w.time)
				}
				// Nothing read yet, and EXAMINE marks nothing \Seen.
				if len(m.Flags) != 0 {
					t.Errorf("%s: FLAGS %v", w.id, m.Flags)
				}
				if bs, ok := m.BodyStructure.(*imap.BodyStructureSinglePart); !ok || !strings.EqualFold(bs.Type+"/"+bs.Subtype, "text/plain") {
					t.Errorf("%s: BODYSTRUCTURE %#v", w.id, m.BodyStructure)
				}
			}
		})
	}

	t.Run("search", func(t *testing.T) {
		if _, err := c.Select("All", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
			t.Fatal(err)
		}
		day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
		for _, tc := range []struct {
			name     string
			criteria imap.SearchCriteria
			want     []uint32
		}{
			{"ALL", imap.SearchCriteria{}, []uint32{1, 2, 3}},
			{"SUBJECT", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "tuesday"}}}, []uint32{1, 3}},
			{"FROM", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: client}}}, []uint32{3}},
			{"TO", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "To", Value: colleague}}}, []uint32{1, 2}},
			{"BODY", imap.SearchCriteria{Body: []string{"agenda"}}, []uint32{2}},
			{"TEXT", imap.SearchCriteria{Text: []string{"thank you"}}, []uint32{3}},
			{"TEXT in header", imap.SearchCriteria{Text: []string{"Team meeting"}}, []uint32{2}},
			{"nothing", imap.SearchCriteria{Body: []string{"no-such-words"}}, nil},
			{"SINCE", imap.SearchCriteria{Since: day(2026, 11, 1)}, []uint32{3}},
			{"BEFORE", imap.SearchCriteria{Before: day(2026, 11, 1)}, []uint32{1, 2}},
			{"ON", imap.SearchCriteria{Since: day(2026, 10, 30), Before: day(2026, 10, 31)}, []uint32{1, 2}},
			{"UNSEEN", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, []uint32{1, 2, 3}},
			{"SEEN", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}, nil},
			{"seq range", imap.SearchCriteria{SeqNum: []imap.SeqSet{{{Start: 2, Stop: 0}}}}, []uint32{2, 3}},
			{"NOT", imap.SearchCriteria{Not: []imap.SearchCriteria{{Body: []string{"agenda"}}}}, []uint32{1, 3}},
		} {
			data, err := c.Search(&tc.criteria, nil).Wait()
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				continue
			}
			if got := data.AllSeqNums(); fmt.Sprint(got) != fmt.Sprint(tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Errorf("SEARCH %s: %v, want %v", tc.name, got, tc.want)
			}
		}
		all, err := c.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		uids := all.AllUIDs()
		var set imap.UIDSet
		set.AddRange(uids[1], 0)
		data, err := c.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{set}}, nil).Wait()
		if err != nil || fmt.Sprint(data.AllUIDs()) != fmt.Sprint(uids[1:]) {
			t.Errorf("UID SEARCH UID %v: %v %v, want %v", set, data, err, uids[1:])
		}
	})

	t.Run("refused", func(t *testing.T) {
		for _, box := range []struct {
			name     string
			readOnly bool
		}{{clientBoxName, false}, {clientBoxName, true}} {
			if _, err := c.Select(box.name, &imap.SelectOptions{ReadOnly: box.readOnly}).Wait(); err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				name string
				run  func() error
			}{
				{"STORE", func() error {
					return c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
				}},
				{"STORE +FLAGS (\\Seen \\Flagged)", func() error {
					return c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen, imap.FlagFlagged}}, nil).Close()
				}},
				{"COPY", func() error { _, err := c.Copy(imap.SeqSetNum(1), "All").Wait(); return err }},
				{"MOVE", func() error { _, err := c.Move(imap.SeqSetNum(1), "All").Wait(); return err }},
				{"APPEND", func() error {
					msg := []byte("From: x@y\r\nSubject: forged\r\n\r\nforged\r\n")
					a := c.Append("All", int64(len(msg)), nil)
					a.Write(msg)
					a.Close()
					_, err := a.Wait()
					return err
				}},
				{"EXPUNGE", func() error { return c.Expunge().Close() }},
				{"UID EXPUNGE", func() error { return c.UIDExpunge(imap.UIDSetNum(1)).Close() }},
				{"CREATE", func() error { return c.Create("Mine", nil).Wait() }},
				{"DELETE", func() error { return c.Delete(clientBoxName).Wait() }},
				{"DELETE month", func() error { return c.Delete("Months/2026-10").Wait() }},
				{"RENAME", func() error { return c.Rename("All", "Other", nil).Wait() }},
				{"UNSUBSCRIBE", func() error { return c.Unsubscribe("All").Wait() }},
			} {
				err := tc.run()
				var ierr *imap.Error
				if !errors.As(err, &ierr) || ierr.Type != imap.StatusResponseTypeNo || !strings.Contains(ierr.Text, "read-only") {
					t.Errorf("%s (read-only %v): %v; want NO ... read-only", tc.name, box.readOnly, err)
				}
			}
		}
		// And nothing changed.
		sel, err := c.Select(clientBoxName, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil || sel.NumMessages != 2 {
			t.Fatalf("after the attempts: %+v %v", sel, err)
		}
		msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true, BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
		if err != nil || len(msgs) != 1 || len(msgs[0].Flags) != 0 || !bytes.Equal(msgs[0].FindBodySection(&imap.FetchItemBodySection{}), first.body) {
			t.Fatalf("after the attempts: %+v %v", msgs, err)
		}
	})

	// CLOSE leaves a read-only mailbox without expunging: it must not fail.
	t.Run("close", func(t *testing.T) {
		if _, err := c.Select("All", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		if err := c.UnselectAndExpunge().Wait(); err != nil {
			t.Errorf("CLOSE: %v", err)
		}
	})

	if l := logs.String(); strings.Contains(l, client) || strings.Contains(l, "Tuesday") {
		t.Errorf("the log names a client or a subject in clear:\n%s", l)
	}
}

// TestStableUIDs: a restarted view gives every message the UID it had, and
// a message recorded in between only adds one.
func TestStableUIDs(t *testing.T) {
	f := newFixture(t)
	at := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	f.outbound(t, "q1", "One", "one", at, consented(client))
	f.outbound(t, "q2", "Two", "two", at.Add(time.Minute), internal(colleague))
	f.inbound(t, "i1", "Three", "three", at.Add(2*time.Minute))
	type box struct {
		validity uint32
		uids     []imap.UID
	}
	look := func() map[string]box {
		addr, tc := f.serve(t, io.Discard)
		c := login(t, addr, tc)
		defer func() { c.Logout().Wait() }()
		out := map[string]box{}
		for _, name := range []string{"All", clientBoxName} {
			sel, err := c.Select(name, &imap.SelectOptions{ReadOnly: true}).Wait()
			if err != nil {
				t.Fatal(err)
			}
			data, err := c.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
			if err != nil {
				t.Fatal(err)
			}
			out[name] = box{sel.UIDValidity, data.AllUIDs()}
		}
		return out
	}
	before := look()
	f.outbound(t, "q3", "Four", "four", at.Add(3*time.Minute), consented("bob@client.example"))
	after := look()
	if b, a := before[clientBoxName], after[clientBoxName]; fmt.Sprint(a) != fmt.Sprint(b) || len(b.uids) != 2 {
		t.Errorf("the client's mailbox changed across a restart: %v then %v", b, a)
	}
	b, a := before["All"], after["All"]
	if a.validity != b.validity || len(b.uids) != 3 || len(a.uids) != 4 || fmt.Sprint(a.uids[:3]) != fmt.Sprint(b.uids) || a.uids[3] <= b.uids[2] {
		t.Errorf("All across a restart: %v then %v; want the same UIDs and one more", b, a)
	}
}

// TestNewRecords: a message recorded while a mailbox is selected is
// announced (EXISTS) at the next command, as the relay keeps writing.
func TestNewRecords(t *testing.T) {
	f := newFixture(t)
	at := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	f.outbound(t, "q1", "One", "one", at, consented(client))
	addr, tc := f.serve(t, io.Discard)
	c := login(t, addr, tc)
	if _, err := c.Select(clientBoxName, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	second := f.inbound(t, "i1", "Two", "two", at.Add(time.Minute))
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if n := c.Mailbox().NumMessages; n != 2 {
		t.Fatalf("after NOOP the selected mailbox has %d messages, want 2", n)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(2), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil || len(msgs) != 1 || !bytes.Equal(msgs[0].FindBodySection(&imap.FetchItemBodySection{Peek: true}), second.body) {
		t.Fatalf("the new message: %+v %v", msgs, err)
	}
}

// TestIdle: a client idling in a mailbox hears of a new record.
func TestIdle(t *testing.T) {
	f := newFixture(t)
	at := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	f.outbound(t, "q1", "One", "one", at, consented(client))
	addr, tc := f.serve(t, io.Discard)
	exists := make(chan uint32, 10)
	c, err := imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: tc, UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("auditor", "audit-pw").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select(clientBoxName, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	f.inbound(t, "i1", "Two", "two", at.Add(time.Minute))
	timeout := time.After(10 * time.Second)
	for n := uint32(0); n != 2; {
		select {
		case n = <-exists:
		case <-timeout:
			t.Fatal("no EXISTS 2 while idling within 10s")
		}
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}
