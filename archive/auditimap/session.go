package auditimap

import (
	"io"
	"sort"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// session is one connection.
type session struct {
	s      *Server
	remote string
	user   string
	flags  *viewerFlags // the viewer's, once logged in

	name     string
	readOnly bool // EXAMINE: not even \Seen changes
	msgs     []*entry
}

func (ss *session) Close() error { return nil }

func noSuchMailbox() error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such mailbox"}
}

func (ss *session) Select(mailbox string, options *imap.SelectOptions) (*imap.SelectData, error) {
	mailbox = canonicalName(mailbox)
	msgs, ok := ss.s.mailboxes()[mailbox]
	if !ok {
		return nil, noSuchMailbox()
	}
	ss.name, ss.msgs, ss.readOnly = mailbox, msgs, options != nil && options.ReadOnly
	data := &imap.SelectData{
		Flags: []imap.Flag{imap.FlagSeen},
		// \Seen can be changed, but only for the session's life: it is not
		// a permanent flag (RFC 9051 7.1).
		PermanentFlags: []imap.Flag{},
		NumMessages:    uint32(len(msgs)),
		UIDNext:        imap.UID(ss.s.nextUID(mailbox, msgs)),
		UIDValidity:    ss.s.o.UIDValidity,
	}
	for i, e := range msgs {
		if !ss.flags.isSeen(e.seen) {
			data.FirstUnseenSeqNum = uint32(i) + 1
			break
		}
	}
	return data, nil
}

// Every command that would change the record is refused.
func (ss *session) Create(string, *imap.CreateOptions) error         { return errReadOnly }
func (ss *session) Delete(string) error                              { return errReadOnly }
func (ss *session) Rename(string, string, *imap.RenameOptions) error { return errReadOnly }
func (ss *session) Subscribe(string) error                           { return nil }
func (ss *session) Unsubscribe(string) error                         { return errReadOnly }
func (ss *session) Copy(imap.NumSet, string) (*imap.CopyData, error) { return nil, errReadOnly }

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
	ss.name, ss.msgs, ss.readOnly = "", nil, false
	return nil
}

// Poll tells the client what changed in the selected mailbox since it
// last heard: new records (EXISTS), and messages that left it (EXPUNGE): a
// decisions summary replaced by a newer one, or a message whose segment
// was pruned. Where expunges may not be sent (during FETCH, STORE and
// SEARCH, RFC 9051 7.5.1), the messages that left stay until they may be.
func (ss *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if ss.name == "" {
		return nil
	}
	now := ss.s.mailboxes()[ss.name]
	current := make(map[uint32]bool, len(now))
	for _, e := range now {
		current[e.uid] = true
	}
	kept := ss.msgs[:0:0]
	for i := len(ss.msgs) - 1; i >= 0; i-- {
		e := ss.msgs[i]
		if current[e.uid] || !allowExpunge {
			continue
		}
		if err := w.WriteExpunge(uint32(i) + 1); err != nil {
			return err
		}
		ss.msgs = append(ss.msgs[:i:i], ss.msgs[i+1:]...)
	}
	known := make(map[uint32]bool, len(ss.msgs))
	for _, e := range ss.msgs {
		known[e.uid] = true
		kept = append(kept, e)
	}
	// New UIDs are above every one known: records only grow.
	for _, e := range now {
		if !known[e.uid] {
			kept = append(kept, e)
		}
	}
	if len(kept) == len(ss.msgs) {
		return nil
	}
	ss.msgs = kept
	return w.WriteNumMessages(uint32(len(kept)))
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

// status answers every STATUS item of IMAP4rev1 and IMAP4rev2 and those of
// the extensions imapserver parses: the library writes each item asked
// for from a pointer, and a nil one panicked (Thunderbird asks for RECENT).
func (ss *session) status(name string, msgs []*entry, o *imap.StatusOptions) *imap.StatusData {
	n := uint32(len(msgs))
	zero, zero64 := uint32(0), int64(0)
	d := &imap.StatusData{Mailbox: name, NumMessages: &n, NumRecent: &zero, NumDeleted: &zero, DeletedStorage: &zero64,
		// Nothing can be appended: a limit of 0 octets (RFC 7889).
		AppendLimit: &zero}
	if o.UIDNext {
		d.UIDNext = imap.UID(ss.s.nextUID(name, msgs))
	}
	d.UIDValidity = ss.s.o.UIDValidity
	if o.NumUnseen {
		unseen := uint32(0)
		for _, e := range msgs {
			if !ss.flags.isSeen(e.seen) {
				unseen++
			}
		}
		d.NumUnseen = &unseen
	}
	if o.Size {
		var size int64
		for _, e := range msgs {
			size += e.size(ss.s)
		}
		d.Size = &size
	}
	return d
}

func (ss *session) Status(mailbox string, options *imap.StatusOptions) (*imap.StatusData, error) {
	mailbox = canonicalName(mailbox)
	msgs, ok := ss.s.mailboxes()[mailbox]
	if !ok {
		return nil, noSuchMailbox()
	}
	return ss.status(mailbox, msgs, options), nil
}
