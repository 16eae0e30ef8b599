package auditimap

import (
	"bufio"
	"bytes"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"github.com/sealpost/sealpost/archive"
)

// each calls f for the selected messages in numSet, in mailbox order.
func (ss *session) each(numSet imap.NumSet, f func(seq uint32, m *archive.ViewMessage) error) error {
	max := uint32(len(ss.msgs))
	maxUID := nextUID(ss.msgs) - 1
	for i, m := range ss.msgs {
		seq := uint32(i) + 1
		var in bool
		switch set := numSet.(type) {
		case imap.SeqSet:
			in = containsNum(set, seq, max)
		case imap.UIDSet:
			in = containsNum(uidRanges(set), uint32(m.Seq), maxUID)
		}
		if in {
			if err := f(seq, m); err != nil {
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

func (ss *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	if ss.name == "" {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "No mailbox selected"}
	}
	return ss.each(numSet, func(seq uint32, m *archive.ViewMessage) error {
		rw := w.CreateMessage(seq)
		rw.WriteUID(imap.UID(m.Seq))
		if options.Flags {
			rw.WriteFlags([]imap.Flag{imap.FlagSeen})
		}
		if options.InternalDate {
			rw.WriteInternalDate(m.Time)
		}
		if options.RFC822Size {
			rw.WriteRFC822Size(m.Size)
		}
		needBody := options.Envelope || options.BodyStructure != nil || len(options.BodySection) > 0 ||
			len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
		if needBody {
			buf, err := ss.s.o.View.Body(m)
			if err != nil {
				rw.Close()
				return err
			}
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
		}
		return rw.Close()
	})
}
