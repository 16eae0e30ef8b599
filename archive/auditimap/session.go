package auditimap

import (
	"io"
	"slices"
	"sort"
	"strings"
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
	// box is the selected mailbox as the client was last told of it.
	box box
}

func (ss *session) Close() error { return nil }

func noSuchMailbox() error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such mailbox"}
}

func (ss *session) Select(mailbox string, options *imap.SelectOptions) (*imap.SelectData, error) {
	mailbox = canonicalName(mailbox)
	b, ok := ss.s.mailboxes()[mailbox]
	if !ok {
		return nil, noSuchMailbox()
	}
	ss.name, ss.box, ss.readOnly = mailbox, b, options != nil && options.ReadOnly
	data := &imap.SelectData{
		Flags: []imap.Flag{imap.FlagSeen},
		// \Seen can be changed, but only for the session's life: it is not
		// a permanent flag (RFC 9051 7.1).
		PermanentFlags: []imap.Flag{},
		NumMessages:    uint32(b.len()),
		UIDNext:        imap.UID(ss.s.nextUID(mailbox, &b)),
		UIDValidity:    ss.s.o.UIDValidity,
	}
	for i := range b.uids {
		if !ss.flags.isSeen(b.seenOf(i)) {
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
	ss.name, ss.box, ss.readOnly = "", box{}, false
	return nil
}

// Poll tells the client what changed in the selected mailbox since it
// last heard: new records (EXISTS), and messages that left it (EXPUNGE): a
// decisions summary replaced by a newer one, or a message whose segment
// was pruned. Where expunges may not be sent (during FETCH, STORE and
// SEARCH, RFC 9051 7.5.1), the messages that left stay until they may be.
// While no message left the mailbox (the same epoch), only the new ones
// are looked at: a NOOP costs what changed, not the mailbox's size.
func (ss *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if ss.name == "" {
		return nil
	}
	now := ss.s.mailboxes()[ss.name] // a client's mailbox may be gone after a prune: empty
	if now.epoch == ss.box.epoch && now.len() >= ss.box.len() {
		if now.len() == ss.box.len() {
			return nil
		}
		ss.box = now
		return w.WriteNumMessages(uint32(now.len()))
	}
	told := ss.box.len()
	left, nLeft, fresh := diff(&ss.box, &now)
	if nLeft > 0 && !allowExpunge {
		// Those that left stay, in order, until they may be expunged.
		ss.box = withNew(&ss.box, &now, fresh)
		if ss.box.len() == told {
			return nil
		}
		return w.WriteNumMessages(uint32(ss.box.len()))
	}
	for i := told - 1; i >= 0; i-- {
		if left[i] {
			if err := w.WriteExpunge(uint32(i) + 1); err != nil {
				return err
			}
		}
	}
	ss.box = now
	if now.len() == told-nLeft {
		return nil
	}
	return w.WriteNumMessages(uint32(now.len()))
}

// diff compares what a client was told with the mailbox now (both in UID
// order): which of what it was told left, and where the messages new since
// begin in now (their UIDs are above every one told: records only grow).
func diff(told, now *box) (left []bool, nLeft, fresh int) {
	left = make([]bool, told.len())
	j := 0
	for i, uid := range told.uids {
		for j < now.len() && now.uids[j] < uid {
			j++
		}
		if j < now.len() && now.uids[j] == uid {
			j++
		} else {
			left[i] = true
			nLeft++
		}
	}
	return left, nLeft, j
}

// withNew is what the client was told followed by the messages of now from
// fresh on: a mailbox of the session's own, which no later one continues.
func withNew(told, now *box, fresh int) box {
	b := box{kind: told.kind, uids: append(slices.Clip(told.uids), now.uids[fresh:]...)}
	if now.about != nil {
		b.about = append(slices.Clip(told.about), now.about[fresh:]...)
	}
	if now.refused != nil {
		b.refused = append(slices.Clip(told.refused), now.refused[fresh:]...)
	}
	return b
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
	// The folders that only hold others: Clients, Months and the clients'
	// groups (Clients/A, ...).
	parents := map[string]bool{"Clients": true, "Months": true}
	names := make([]string, 0, len(boxes)+40)
	for n := range boxes {
		names = append(names, n)
		if rest, ok := strings.CutPrefix(n, prefixClient); ok {
			group, _, _ := strings.Cut(rest, "/")
			parents[prefixClient+group] = true
		}
	}
	for n := range parents {
		names = append(names, n)
	}
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
		if parents[n] {
			data.Attrs = []imap.MailboxAttr{imap.MailboxAttrNoSelect, imap.MailboxAttrHasChildren}
		} else {
			data.Attrs = []imap.MailboxAttr{imap.MailboxAttrHasNoChildren}
		}
		if b, ok := boxes[n]; ok && options != nil && options.ReturnStatus != nil {
			data.Status = ss.status(n, &b, options.ReturnStatus)
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
func (ss *session) status(name string, b *box, o *imap.StatusOptions) *imap.StatusData {
	n := uint32(b.len())
	zero, zero64 := uint32(0), int64(0)
	d := &imap.StatusData{Mailbox: name, NumMessages: &n, NumRecent: &zero, NumDeleted: &zero, DeletedStorage: &zero64,
		// Nothing can be appended: a limit of 0 octets (RFC 7889).
		AppendLimit: &zero}
	if o.UIDNext {
		d.UIDNext = imap.UID(ss.s.nextUID(name, b))
	}
	d.UIDValidity = ss.s.o.UIDValidity
	if o.NumUnseen {
		unseen := n - uint32(ss.flags.countSeen(b))
		d.NumUnseen = &unseen
	}
	if o.Size {
		var size int64
		for i := range b.uids {
			size += b.size(ss.s, i)
		}
		d.Size = &size
	}
	return d
}

func (ss *session) Status(mailbox string, options *imap.StatusOptions) (*imap.StatusData, error) {
	mailbox = canonicalName(mailbox)
	b, ok := ss.s.mailboxes()[mailbox]
	if !ok {
		return nil, noSuchMailbox()
	}
	return ss.status(mailbox, &b, options), nil
}
