package archive

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
)

// IngestSource is where a message was found in a provider's mailbox.
type IngestSource struct {
	Account     string `json:"account"`
	Folder      string `json:"folder"`
	UIDValidity uint32 `json:"uidvalidity"`
	UID         uint32 `json:"uid"`
}

// IngestedMessage is a message found over IMAP that is from or to a client.
type IngestedMessage struct {
	Message
	Clients []string // the clients it is from or to: the record is found by them
	Source  IngestSource
}

// RecordInbound archives a message found in a provider's mailbox, once:
// a message whose bytes are already in the record (seen before a restart,
// in another folder, or again after a UIDVALIDITY change) is not recorded
// again, and recorded reports false. Either way the source counts as read.
func (a *Archive) RecordInbound(ctx context.Context, in IngestedMessage, body io.Reader) (recorded bool, err error) {
	meta := &messageMeta{Message: in.Message}
	payload, info, err := a.encrypt(meta, body)
	if err != nil {
		return false, err
	}
	dedup := a.dedupHash(info.sha256)
	a.ingestMu.Lock()
	defer a.ingestMu.Unlock()
	known := a.ingested[dedup]
	if !known && a.index != nil {
		if known, err = a.index.hasDedup(ctx, dedup); err != nil {
			payload.close()
			return false, fmt.Errorf("archive: index: %w", err)
		}
	}
	if known {
		payload.close()
		a.advance(in.Source)
		return false, nil
	}
	src := in.Source
	h := header{Kind: kindMessage, ID: in.ID, Dir: string(in.Direction), Src: &src, Dedup: dedup}
	seen := map[string]bool{}
	for _, c := range in.Clients {
		if x := a.addrHash(c); !seen[x] {
			seen[x] = true
			h.Addrs = append(h.Addrs, x)
		}
	}
	if err := a.submit(ctx, h, payload); err != nil {
		return false, err
	}
	a.ingested[dedup] = true
	a.advance(in.Source)
	return true, nil
}

// IngestState is how far a folder has been read: the UIDVALIDITY of the
// newest record from it and the highest UID recorded under that validity.
// Zeros: never read.
func (a *Archive) IngestState(account, folder string) (uidValidity, lastUID uint32) {
	a.ingestMu.Lock()
	defer a.ingestMu.Unlock()
	s := a.ingestAt[account+"\x00"+folder]
	return s.UIDValidity, s.UID
}

// rememberIngest is called for records read at start.
func (a *Archive) rememberIngest(dedup string, src *IngestSource) {
	a.ingested[dedup] = true
	if src != nil {
		a.advance(*src)
	}
}

// advance moves a folder's position forward; a new UIDVALIDITY starts over.
func (a *Archive) advance(s IngestSource) {
	k := s.Account + "\x00" + s.Folder
	cur, ok := a.ingestAt[k]
	if !ok || cur.UIDValidity != s.UIDValidity || s.UID > cur.UID {
		a.ingestAt[k] = s
	}
}

// dedupHash is keyed: the clear header must not let someone with the
// archive confirm a guess of a message's content.
func (a *Archive) dedupHash(bodySHA256 string) string {
	m := hmac.New(sha256.New, a.hashKey)
	m.Write([]byte("ingest\x00" + bodySHA256))
	return hex.EncodeToString(m.Sum(nil)[:16])
}
