package auditimap

import (
	"io"
	"sort"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/sealpost/sealpost/archive"
)

// session is one connection.
type session struct {
	s      *Server
	remote string
	user   string

	name string
	msgs []*archive.ViewMessage
}

func (ss *session) Close() error { return nil }

func (ss *session) Select(mailbox string, options *imap.SelectOptions) (*imap.SelectData, error) {
	msgs, ok := ss.s.mailboxes()[mailbox]
	if !ok {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such mailbox"}
	}
	ss.name, ss.msgs = mailbox, msgs
	return &imap.SelectData{
		Flags:          []imap.Flag{imap.FlagSeen},
		PermanentFlags: []imap.Flag{},
		NumMessages:    uint32(len(msgs)),
		UIDNext:        imap.UID(nextUID(msgs)),
		UIDValidity:    ss.s.o.UIDValidity,
	}, nil
}

func nextUID(msgs []*archive.ViewMessage) uint32 {
	if len(msgs) == 0 {
		return 1
	}
	return uint32(msgs[len(msgs)-1].Seq) + 1
}

// Every command that would change the record is refused.
func (ss *session) Create(string, *imap.CreateOptions) error         { return errReadOnly }
func (ss *session) Delete(string) error                              { return errReadOnly }
func (ss *session) Rename(string, string, *imap.RenameOptions) error { return errReadOnly }
func (ss *session) Subscribe(string) error                           { return nil }
func (ss *session) Unsubscribe(string) error                         { return errReadOnly }
func (ss *session) Copy(imap.NumSet, string) (*imap.CopyData, error) { return nil, errReadOnly }
func (ss *session) Store(*imapserver.FetchWriter, imap.NumSet, *imap.StoreFlags, *imap.StoreOptions) error {
	return errReadOnly
}

func (ss *session) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	io.Copy(io.Discard, r)
	return nil, errReadOnly
}

// Expunge refuses EXPUNGE and UID EXPUNGE. CLOSE calls it too, with a
// writer that has no connection (CLOSE sends no EXPUNGE responses); nothing
// here is ever marked \Deleted, so CLOSE just leaves the mailbox, as on any
// read-only mailbox (RFC 9051 6.4.1), instead of failing and leaving it
// selected.
func (ss *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	if uids == nil && isClose(w) {
		return nil
	}
	return errReadOnly
}

// isClose tells CLOSE from EXPUNGE: imapserver (v2.0.0-beta.8) gives CLOSE
// a zero ExpungeWriter (no connection to write to) and EXPUNGE one bound to
// the connection; there is no other way to tell them apart.
func isClose(w *imapserver.ExpungeWriter) bool {
	return w == nil || *w == (imapserver.ExpungeWriter{})
}

func (ss *session) Unselect() error {
	ss.name, ss.msgs = "", nil
	return nil
}

// Poll tells the client about messages recorded since it selected the
// mailbox (EXISTS). The record is append-only and a mailbox lists its
// messages in chain order, so the old list is always a prefix of the new:
// there is never an EXPUNGE to send.
func (ss *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if ss.name == "" {
		return nil
	}
	msgs := ss.s.mailboxes()[ss.name]
	if len(msgs) <= len(ss.msgs) {
		return nil
	}
	ss.msgs = msgs
	return w.WriteNumMessages(uint32(len(msgs)))
}

// Idle announces new records while the client waits (imapserver
// advertises IDLE, and Thunderbird idles in the open folder).
func (ss *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	tick := time.NewTicker(max(ss.s.o.RefreshEvery, 100*time.Millisecond)) // no busy loop
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return nil
		case <-tick.C:
			if err := ss.Poll(w, true); err != nil {
				return err
			}
		}
	}
}

func (ss *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim})
	}
	boxes := ss.s.mailboxes()
	names := make([]string, 0, len(boxes)+2)
	for n := range boxes {
		names = append(names, n)
	}
	names = append(names, "Clients", "Months")
	sort.Strings(names)
	for _, n := range names {
		match := false
		for _, p := range patterns {
			if imapserver.MatchList(n, delim, ref, p) {
				match = true
			}
		}
		if !match {
			continue
		}
		data := &imap.ListData{Mailbox: n, Delim: delim}
		if n == "Clients" || n == "Months" {
			data.Attrs = []imap.MailboxAttr{imap.MailboxAttrNoSelect, imap.MailboxAttrHasChildren}
		} else {
			data.Attrs = []imap.MailboxAttr{imap.MailboxAttrHasNoChildren}
		}
		if options != nil && options.ReturnStatus != nil && boxes[n] != nil {
			data.Status = ss.status(n, boxes[n], options.ReturnStatus)
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

func (ss *session) status(name string, msgs []*archive.ViewMessage, o *imap.StatusOptions) *imap.StatusData {
	n := uint32(len(msgs))
	d := &imap.StatusData{Mailbox: name}
	if o.NumMessages {
		d.NumMessages = &n
	}
	if o.UIDNext {
		d.UIDNext = imap.UID(nextUID(msgs))
	}
	if o.UIDValidity {
		d.UIDValidity = ss.s.o.UIDValidity
	}
	if o.NumUnseen {
		zero := uint32(0)
		d.NumUnseen = &zero
	}
	if o.Size {
		var size int64
		for _, m := range msgs {
			size += m.Size
		}
		d.Size = &size
	}
	return d
}

func (ss *session) Status(mailbox string, options *imap.StatusOptions) (*imap.StatusData, error) {
	msgs, ok := ss.s.mailboxes()[mailbox]
	if !ok {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such mailbox"}
	}
	return ss.status(mailbox, msgs, options), nil
}
