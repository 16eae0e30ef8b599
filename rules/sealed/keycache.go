package sealed

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"sync"

	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/model"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/types"
)

// keyCache keeps, per passphrase, what pdfcpu's security handler derived
// for the first PDF sealed with it: the encryption dictionary (U, UE, O,
// OE, Perms) and the file key. Revision 6's password hashing (ISO 32000-2
// algorithm 2.B, run four times per document) costs about 7 ms of CPU,
// several times the rest of a short message's PDF; a client's later PDFs
// reuse it. pdfcpu still encrypts every string and stream, each with a
// fresh random IV, so sharing the file key among one client's PDFs is
// sound for AESV3; they do carry the same U and O entries, which shows
// that they were sealed with the same passphrase, as their recipient shows
// anyway. The map's keys are HMACs under a key made at start, so the cache
// holds no passphrase; it holds keys as sensitive as the passphrases, in
// this process's memory only.
type keyCache struct {
	mu      sync.Mutex
	mac     []byte
	entries map[[32]byte]*derived
}

// derived is what pdfcpu computed for one passphrase.
type derived struct {
	enc  model.Enc
	key  []byte
	dict types.Dict
}

// maxCachedKeys bounds the cache: a practice's clients, with room.
const maxCachedKeys = 4096

// defaultKeys is the process's cache, shared by every Seal.
var defaultKeys = newKeyCache()

func newKeyCache() *keyCache {
	mac := make([]byte, 32)
	_, _ = rand.Read(mac) // crypto/rand.Read does not fail (Go 1.24 and later)
	return &keyCache{mac: mac, entries: map[[32]byte]*derived{}}
}

func (c *keyCache) id(passphrase string) [32]byte {
	h := hmac.New(sha256.New, c.mac)
	h.Write([]byte(passphrase))
	var id [32]byte
	h.Sum(id[:0])
	return id
}

// apply gives ctx what was derived for passphrase before, so that pdfcpu
// writes the document encrypted without deriving it again, and reports
// whether it could. A context it did nothing to is encrypted the usual way
// (model.ENCRYPT: pdfcpu derives everything), and store keeps the result.
func (c *keyCache) apply(ctx *model.Context, passphrase string) (bool, error) {
	if c == nil {
		return false, nil
	}
	id := c.id(passphrase)
	c.mu.Lock()
	d := c.entries[id]
	c.mu.Unlock()
	if d == nil {
		return false, nil
	}
	ctx.Cmd = model.CREATE // no new security handler: the one below is used
	ref, err := ctx.XRefTable.IndRefForNewObject(d.dict.Clone().(types.Dict))
	if err != nil {
		return false, fmt.Errorf("sealed: PDF encryption dictionary: %w", err)
	}
	ctx.Encrypt = ref
	enc := d.enc
	ctx.E = &enc
	ctx.EncKey = d.key
	ctx.AES4Strings, ctx.AES4Streams, ctx.AES4EmbeddedStreams = true, true, true
	return true, nil
}

// store keeps what pdfcpu derived for the document it wrote.
func (c *keyCache) store(ctx *model.Context, passphrase string) error {
	if c == nil {
		return nil
	}
	d, err := ctx.EncryptDict()
	if err != nil {
		return fmt.Errorf("sealed: PDF encryption dictionary: %w", err)
	}
	entry := &derived{enc: *ctx.E, key: append([]byte(nil), ctx.EncKey...), dict: d.Clone().(types.Dict)}
	id := c.id(passphrase)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= maxCachedKeys {
		for k := range c.entries { // one out, at random
			delete(c.entries, k)
			break
		}
	}
	c.entries[id] = entry
	return nil
}
