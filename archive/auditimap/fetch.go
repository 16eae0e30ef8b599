package auditimap

import (
	"bufio"
	"bytes"
	"slices"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"
)

// each calls f for the selected messages in numSet, each once, in mailbox
// order. The ranges are found by binary search: a FETCH of the newest
// messages of a large mailbox costs what it returns.
func (ss *session) each(numSet imap.NumSet, f func(seq uint32, i int) error) error {
	b := &ss.box
	n := b.len()
	if n == 0 {
		return nil
	}
	var spans [][2]int // [from, to) of the mailbox's messages
	switch set := numSet.(type) {
	case imap.SeqSet:
		for _, r := range set {
			start, stop := resolveRange(r.Start, r.Stop, uint32(n))
			spans = append(spans, [2]int{int(start) - 1, min(int(stop), n)})
		}
	case imap.UIDSet:
		for _, r := range set {
			start, stop := resolveRange(uint32(r.Start), uint32(r.Stop), b.uids[n-1])
			from, _ := slices.BinarySearch(b.uids, start)
			to, found := slices.BinarySearch(b.uids, stop)
			if found {
				to++
			}
			spans = append(spans, [2]int{from, to})
		}
	}
	slices.SortFunc(spans, func(x, y [2]int) int { return x[0] - y[0] })
	next := 0 // messages before next were handed on
	for _, sp := range spans {
		for i := max(sp[0], next); i < sp[1]; i++ {
			if err := f(uint32(i)+1, i); err != nil {
				return err
			}
		}
		next = max(next, sp[1])
	}
	return nil
}

// resolveRange resolves "*" (0) to max, as RFC 9051 has it, and orders
// the range.
func resolveRange(start, stop, max uint32) (uint32, uint32) {
	if start == 0 {
		start = max
	}
	if stop == 0 {
		stop = max
	}
	if start > stop {
		start, stop = stop, start
	}
	return start, stop
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
		start, stop := resolveRange(r.Start, r.Stop, max)
		if n >= start && n <= stop {
			return true
		}
	}
	return false
}

// flagsOf is a message's flags for this viewer.
func (ss *session) flagsOf(k seenKey) []imap.Flag {
	if ss.flags.isSeen(k) {
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
	b := &ss.box
	return ss.each(numSet, func(seq uint32, i int) error {
		rw := w.CreateMessage(seq)
		rw.WriteUID(imap.UID(b.uids[i]))
		// A message this FETCH marks \Seen has its new flags told.
		seen := b.seenOf(i)
		changed := markSeen && !ss.flags.isSeen(seen)
		if changed {
			ss.flags.set(seen, true)
		}
		if options.Flags || changed {
			rw.WriteFlags(ss.flagsOf(seen))
		}
		if options.InternalDate {
			rw.WriteInternalDate(b.date(ss.s, i))
		}
		if options.RFC822Size {
			rw.WriteRFC822Size(b.size(ss.s, i))
		}
		needBody := options.Envelope || options.BodyStructure != nil || len(options.BodySection) > 0 ||
			len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
		if needBody {
			buf, err := b.body(ss.s, i)
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
	b := &ss.box
	return ss.each(numSet, func(seq uint32, i int) error {
		k := b.seenOf(i)
		switch flags.Op {
		case imap.StoreFlagsAdd:
			if seen {
				ss.flags.set(k, true)
			}
		case imap.StoreFlagsDel:
			if seen {
				ss.flags.set(k, false)
			}
		case imap.StoreFlagsSet:
			ss.flags.set(k, seen)
		}
		if flags.Silent {
			return nil
		}
		rw := w.CreateMessage(seq)
		rw.WriteUID(imap.UID(b.uids[i]))
		rw.WriteFlags(ss.flagsOf(k))
		return rw.Close()
	})
}
