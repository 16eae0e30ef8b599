package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/sealpost/sealpost/internal/fsutil"
)

// totpStore keeps each login's TOTP secret (RFC 6238) in one file in
// data_dir, readable by sealpost alone, with the last time step used: a
// code is taken once.
type totpStore struct {
	path string

	mu      sync.Mutex
	entries map[string]totpEntry
}

type totpEntry struct {
	Secret   string    `json:"secret"` // base32, as authenticator apps take it
	Since    time.Time `json:"since"`
	LastStep int64     `json:"last_step"`
}

func openTOTPStore(path string) (*totpStore, error) {
	st := &totpStore{path: path, entries: map[string]totpEntry{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	if err := json.Unmarshal(b, &st.entries); err != nil {
		return nil, fmt.Errorf("console: %s: %w", path, err)
	}
	return st, nil
}

func (st *totpStore) get(user string) (totpEntry, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	e, ok := st.entries[user]
	return e, ok
}

// change applies f to the entries and writes them; on error nothing changed.
func (st *totpStore) change(f func(map[string]totpEntry)) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	next := make(map[string]totpEntry, len(st.entries)+1)
	for k, v := range st.entries {
		next[k] = v
	}
	f(next)
	b, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(st.path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("console: %w", err)
	}
	st.entries = next
	return nil
}
