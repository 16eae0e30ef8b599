package auditimap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
)

func (ss *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	if ss.name == "" {
		return nil, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "No mailbox selected"}
	}
	// Each content criterion, and each branch of OR and NOT, reads the
	// messages again: a long list would keep the server busy for hours.
	if n := criteriaCount(criteria, 0); n > maxSearchCriteria {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit,
			Text: fmt.Sprintf("Too many search criteria (at most %d, nested %d deep)", maxSearchCriteria, maxSearchDepth)}
	}
	var data imap.SearchData
	var seqs imap.SeqSet
	var uids imap.UIDSet
	b := &ss.box
	max, maxUID := uint32(b.len()), uint32(0)
	if b.len() > 0 {
		maxUID = b.uids[b.len()-1]
	}
	for i := range b.uids {
		seq := uint32(i) + 1
		ok, err := ss.match(seq, i, criteria, max, maxUID)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if kind == imapserver.NumKindUID {
			uids.AddNum(imap.UID(b.uids[i]))
		} else {
			seqs.AddNum(seq)
		}
	}
	if kind == imapserver.NumKindUID {
		data.All = uids
	} else {
		data.All = seqs
	}
	return &data, nil
}

// match applies the search criteria to the i-th message; text criteria
// decrypt it.
func (ss *session) match(seq uint32, i int, c *imap.SearchCriteria, max, maxUID uint32) (bool, error) {
	b := &ss.box
	for _, set := range c.SeqNum {
		if !containsNum(set, seq, max) {
			return false, nil
		}
	}
	for _, set := range c.UID {
		if !containsNum(uidRanges(set), b.uids[i], maxUID) {
			return false, nil
		}
	}
	if !c.Since.IsZero() || !c.Before.IsZero() {
		date := b.date(ss.s, i)
		day := time.Date(date.Year(), date.Month(), date.Day(), 0, 0, 0, 0, time.UTC)
		if (!c.Since.IsZero() && day.Before(c.Since)) || (!c.Before.IsZero() && !day.Before(c.Before)) {
			return false, nil
		}
	}
	// The only flag a message has is \Seen, for this viewer.
	seen := ss.flags.isSeen(b.seenOf(i))
	for _, f := range c.Flag {
		if !strings.EqualFold(string(f), string(imap.FlagSeen)) || !seen {
			return false, nil
		}
	}
	for _, f := range c.NotFlag {
		if strings.EqualFold(string(f), string(imap.FlagSeen)) && seen {
			return false, nil
		}
	}
	if c.Larger != 0 || c.Smaller != 0 {
		if size := b.size(ss.s, i); (c.Larger != 0 && size <= c.Larger) || (c.Smaller != 0 && size >= c.Smaller) {
			return false, nil
		}
	}
	if len(c.Header) > 0 || len(c.Text) > 0 || len(c.Body) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		buf, err := b.body(ss.s, i)
		if err != nil {
			return false, err
		}
		entity := func() *gomessage.Entity {
			e, _ := gomessage.Read(bytes.NewReader(buf))
			if e == nil {
				e, _ = gomessage.New(gomessage.Header{}, bytes.NewReader(nil))
			}
			return e
		}
		h := mail.Header{Header: entity().Header}
		for _, hc := range c.Header {
			if !headerContains(h.FieldsByKey(hc.Key), hc.Value) {
				return false, nil
			}
		}
		if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
			t, err := h.Date()
			if err != nil {
				return false, nil
			}
			d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
			if (!c.SentSince.IsZero() && d.Before(c.SentSince)) || (!c.SentBefore.IsZero() && !d.Before(c.SentBefore)) {
				return false, nil
			}
		}
		for _, t := range c.Text {
			if !entityContains(entity(), t, true) {
				return false, nil
			}
		}
		for _, t := range c.Body {
			if !entityContains(entity(), t, false) {
				return false, nil
			}
		}
	}
	for _, not := range c.Not {
		ok, err := ss.match(seq, i, &not, max, maxUID)
		if err != nil || ok {
			return false, err
		}
	}
	for _, or := range c.Or {
		a, err := ss.match(seq, i, &or[0], max, maxUID)
		if err != nil {
			return false, err
		}
		b, err := ss.match(seq, i, &or[1], max, maxUID)
		if err != nil {
			return false, err
		}
		if !a && !b {
			return false, nil
		}
	}
	return true, nil
}

func headerContains(fields gomessage.HeaderFields, pattern string) bool {
	if pattern == "" {
		return fields.Len() > 0
	}
	pattern = strings.ToLower(pattern)
	for fields.Next() {
		v, _ := fields.Text()
		if strings.Contains(strings.ToLower(v), pattern) {
			return true
		}
	}
	return false
}

func entityContains(e *gomessage.Entity, pattern string, withHeader bool) bool {
	if pattern == "" {
		return true
	}
	if withHeader && headerContains(e.Header.Fields(), pattern) {
		return true
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			part, err := mr.NextPart()
			if err != nil {
				return false
			}
			if entityContains(part, pattern, withHeader) {
				return true
			}
		}
	}
	t, _, _ := e.Header.ContentType()
	if t != "" && !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	b, err := io.ReadAll(io.LimitReader(e.Body, 32<<20))
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return false
	}
	return bytes.Contains(bytes.ToLower(b), bytes.ToLower([]byte(pattern)))
}

// Limits of one SEARCH (a mail client's searches use a few criteria).
const (
	maxSearchCriteria = 32
	maxSearchDepth    = 8
)

// criteriaCount counts the criteria that read messages, with OR and NOT
// branches; past maxSearchDepth levels it answers more than the limit.
func criteriaCount(c *imap.SearchCriteria, depth int) int {
	if depth > maxSearchDepth {
		return maxSearchCriteria + 1
	}
	n := len(c.Header) + len(c.Body) + len(c.Text) + len(c.SeqNum) + len(c.UID)
	for i := range c.Not {
		n += 1 + criteriaCount(&c.Not[i], depth+1)
	}
	for i := range c.Or {
		n += 1 + criteriaCount(&c.Or[i][0], depth+1) + criteriaCount(&c.Or[i][1], depth+1)
	}
	return n
}
