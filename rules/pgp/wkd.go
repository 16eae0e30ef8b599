package pgp

import (
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/sealpost/sealpost/internal/addr"
)

// WKDOptions turn on Web Key Directory lookups (draft-koch-openpgp-webkey-
// service) for recipients without a usable key in the keyring.
type WKDOptions struct {
	Client *http.Client  // default: a client with the system's roots
	Budget time.Duration // the most a lookup may add to a RCPT (default 3 s)
	TTL    time.Duration // how long an answer, found or not, is remembered (default 1 h)
	// URLs overrides where keys are fetched (tests); default: the advanced
	// method, then the direct one.
	URLs func(local, domain string) []string
}

type wkd struct {
	opts  WKDOptions
	mu    sync.Mutex
	cache map[string]wkdAnswer
}

type wkdAnswer struct {
	key     []byte // binary key, nil when none was found
	expires time.Time
}

func newWKD(o WKDOptions) *wkd {
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if o.Budget <= 0 {
		o.Budget = 3 * time.Second
	}
	if o.TTL <= 0 {
		o.TTL = time.Hour
	}
	if o.URLs == nil {
		o.URLs = wkdURLs
	}
	return &wkd{opts: o, cache: map[string]wkdAnswer{}}
}

// wkdURLs are the advanced and the direct method's addresses.
func wkdURLs(local, domain string) []string {
	h := zbase32(sha1Sum([]byte(strings.ToLower(local))))
	l := url.QueryEscape(local)
	return []string{
		fmt.Sprintf("https://openpgpkey.%s/.well-known/openpgpkey/%s/hu/%s?l=%s", domain, domain, h, l),
		fmt.Sprintf("https://%s/.well-known/openpgpkey/hu/%s?l=%s", domain, h, l),
	}
}

func sha1Sum(b []byte) []byte {
	s := sha1.Sum(b)
	return s[:]
}

// zbase32 is the encoding WKD names its files with.
func zbase32(b []byte) string {
	const alphabet = "ybndrfg8ejkmcpqxot1uwisza345h769"
	var out strings.Builder
	var buf uint64
	bits := 0
	for _, c := range b {
		buf = buf<<8 | uint64(c)
		bits += 8
		for bits >= 5 {
			out.WriteByte(alphabet[(buf>>(bits-5))&31])
			bits -= 5
		}
	}
	if bits > 0 {
		out.WriteByte(alphabet[(buf<<(5-bits))&31])
	}
	return out.String()
}

// fetch returns the binary key the directory publishes for address, nil
// when it publishes none. It never takes longer than the budget.
func (w *wkd) fetch(ctx context.Context, address string, now time.Time) ([]byte, error) {
	w.mu.Lock()
	if a, ok := w.cache[address]; ok && now.Before(a.expires) {
		w.mu.Unlock()
		return a.key, nil
	}
	w.mu.Unlock()
	local, domain, err := addr.Split(address)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, w.opts.Budget)
	defer cancel()
	var key []byte
	var lastErr error
	for _, u := range w.opts.URLs(local, domain) {
		key, lastErr = w.get(ctx, u)
		if key != nil || ctx.Err() != nil {
			break
		}
	}
	if key == nil && lastErr != nil && !errors.Is(lastErr, errNotPublished) {
		// A failure is remembered for a short while only: it may pass.
		w.remember(address, nil, now.Add(min(w.opts.TTL, 5*time.Minute)))
		return nil, lastErr
	}
	w.remember(address, key, now.Add(w.opts.TTL))
	return key, nil
}

func (w *wkd) remember(address string, key []byte, until time.Time) {
	w.mu.Lock()
	w.cache[address] = wkdAnswer{key: key, expires: until}
	w.mu.Unlock()
}

var errNotPublished = errors.New("no key published")

func (w *wkd) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := w.opts.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, errNotPublished
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("WKD %s: %s", req.URL.Host, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	return b, nil
}

// wkdLookup asks the directory for the address's key and, when it has one
// that carries the address, imports it (source "wkd") so that encryption
// finds it by fingerprint.
func (k *Keyring) wkdLookup(ctx context.Context, address string) error {
	raw, err := k.wkd.fetch(ctx, address, k.now())
	if err != nil || raw == nil {
		return err
	}
	el, err := openpgp.ReadKeyRing(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("WKD key for the address does not parse: %w", err)
	}
	var keep bytes.Buffer
	for _, e := range el {
		for _, a := range entityAddresses(e) {
			if a == address && e.PrivateKey == nil {
				e.Serialize(&keep)
				break
			}
		}
	}
	if keep.Len() == 0 {
		return nil // a directory key without the address is not the address's key
	}
	_, err = k.Import(ctx, &keep, "wkd")
	return err
}
