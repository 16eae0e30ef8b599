package auditimap

import (
	"bufio"
	"bytes"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"
)

// each calls f for the selected messages in numSet, in mailbox order.
func (ss *session) each(numSet imap.NumSet, f func(seq uint32, e *entry) error) error {
	max := uint32(len(ss.msgs))
	maxUID := uint32(0)
	if len(ss.msgs) > 0 {
		maxUID = ss.msgs[len(ss.msgs)-1].uid
	}
	for i, e := range ss.msgs {
		seq := uint32(i) + 1
		var in bool
		switch set := numSet.(type) {
		case imap.SeqSet:
			in = containsNum(set, seq, max)
		case imap.UIDSet:
			in = containsNum(uidRanges(set), e.uid, maxUID)
		}
		if in {
			if err := f(seq, e); err != nil {
				return err
			}
		}
	}
	return nil
}

func uidRanges(set imap.UIDSet) imap.SeqSet {
	out := make(imap.SeqSet, len(set))
	for i, r := range set {
		out[i] = imap.SeqRange{Start: uint32(r.Start), Stop: uint32(r.Stop)}
	}
	return out
}

// containsNum resolves "*" (0) to max, as RFC 9051 has it.
func containsNum(set imap.SeqSet, n, max uint32) bool {
	for _, r := range set {
		start, stop := r.Start, r.Stop
		if start == 0 {
			start = max
		}
		if stop == 0 {
			stop = max
		}
		if start > stop {
			start, stop = stop, start
		}
		if n >= start && n <= stop {
			return true
		}
	}
	return false
}

// flagsOf is a message's flags for this viewer.
func (ss *session) flagsOf(e *entry) []imap.Flag {
	if ss.flags.isSeen(e.seen) {
		return []imap.Flag{imap.FlagSeen}
	}
	return []imap.Flag{}
}

// setsSeen says whether a FETCH marks its messages \Seen: reading a body
// section without .PEEK does, in a mailbox opened with SELECT (RFC 9051
// 6.4.5).
func (ss *session) setsSeen(options *imap.FetchOptions) bool {
	if ss.readOnly {
		return false
	}
	for _, bs := range options.BodySection {
		if !bs.Peek {
			return true
		}
	}
	for _, bs := range options.BinarySection {
		if !bs.Peek {
			return true
		}
	}
	return false
}

func (ss *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	if ss.name == "" {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "No mailbox selected"}
	}
	markSeen := ss.setsSeen(options)
	return ss.each(numSet, func(seq uint32, e *entry) error {
		rw := w.CreateMessage(seq)
		rw.WriteUID(imap.UID(e.uid))
		// A message this FETCH marks \Seen has its new flags told.
		changed := markSeen && !ss.flags.isSeen(e.seen)
		if changed {
			ss.flags.set(e.seen, true)
		}
		if options.Flags || changed {
			rw.WriteFlags(ss.flagsOf(e))
		}
		if options.InternalDate {
			rw.WriteInternalDate(e.date)
		}
		if options.RFC822Size {
			rw.WriteRFC822Size(e.size(ss.s))
		}
		needBody := options.Envelope || options.BodyStructure != nil || len(options.BodySection) > 0 ||
			len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
		if needBody {
			buf, err := e.body(ss.s)
			if err != nil {
				rw.Close()
				return err
			}
			if err := writeBody(rw, buf, options); err != nil {
				return err
			}
		}
		return rw.Close()
	})
}

// writeBody writes the items of a FETCH that read the message.
func writeBody(rw *imapserver.FetchResponseWriter, buf []byte, options *imap.FetchOptions) error {
	if options.Envelope {
		if h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(buf))); err == nil {
			rw.WriteEnvelope(imapserver.ExtractEnvelope(h))
		}
	}
	if options.BodyStructure != nil {
		rw.WriteBodyStructure(imapserver.ExtractBodyStructure(bytes.NewReader(buf)))
	}
	for _, bs := range options.BodySection {
		sec := imapserver.ExtractBodySection(bytes.NewReader(buf), bs)
		wc := rw.WriteBodySection(bs, int64(len(sec)))
		_, werr := wc.Write(sec)
		if cerr := wc.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return werr
		}
	}
	for _, bs := range options.BinarySection {
		sec := imapserver.ExtractBinarySection(bytes.NewReader(buf), bs)
		wc := rw.WriteBinarySection(bs, int64(len(sec)))
		_, werr := wc.Write(sec)
		if cerr := wc.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return werr
		}
	}
	for _, bss := range options.BinarySectionSize {
		rw.WriteBinarySectionSize(bss, imapserver.ExtractBinarySectionSize(bytes.NewReader(buf), bss))
	}
	return nil
}

// Store changes \Seen, and only \Seen, for this viewer while the view
// runs: the record has no flags, and every other flag would change it.
func (ss *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	if ss.name == "" {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "No mailbox selected"}
	}
	if ss.readOnly {
		return errReadOnlySelected
	}
	seen := false
	for _, f := range flags.Flags {
		if len(f) != len(imap.FlagSeen) || !equalFoldASCII(string(f), string(imap.FlagSeen)) {
			return errReadOnly
		}
		seen = true
	}
	return ss.each(numSet, func(seq uint32, e *entry) error {
		switch flags.Op {
		case imap.StoreFlagsAdd:
			if seen {
				ss.flags.set(e.seen, true)
			}
		case imap.StoreFlagsDel:
			if seen {
				ss.flags.set(e.seen, false)
			}
		case imap.StoreFlagsSet:
			ss.flags.set(e.seen, seen)
		}
		if flags.Silent {
			return nil
		}
		rw := w.CreateMessage(seq)
		rw.WriteUID(imap.UID(e.uid))
		rw.WriteFlags(ss.flagsOf(e))
		return rw.Close()
	})
}
