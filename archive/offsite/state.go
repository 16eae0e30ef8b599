package offsite

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sealpost/sealpost/internal/fsutil"
)

// StateFile is where, in data_dir, the uploader keeps what it has
// uploaded. It is a cache: without it (or for another bucket or node) each
// file is checked against the bucket before it would be uploaded, and
// counts as uploaded only when the relay's version there holds its bytes.
const StateFile = "archive-offsite.json"

// state is what has been uploaded: sealed segments and key files by file
// name, the newest tail and head.
type state struct {
	Bucket   string               `json:"bucket"`
	Prefix   string               `json:"prefix"`
	Node     string               `json:"node"`
	Objects  map[string]*uploaded `json:"objects"`
	Tail     tailState            `json:"tail"`
	HeadSum  string               `json:"head_sha256,omitempty"`
	SyncedAt time.Time            `json:"synced_at"` // the last moment nothing was waiting
}

type uploaded struct {
	Version     string    `json:"version"`
	SHA256      string    `json:"sha256"`
	RetainUntil time.Time `json:"retain_until"`
	LegalHold   bool      `json:"legal_hold,omitempty"`
}

type tailState struct {
	Segment string    `json:"segment,omitempty"`
	Size    int64     `json:"size,omitempty"`
	At      time.Time `json:"at"`
}

func readState(path string) (*state, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("offsite: %s: %w", path, err)
	}
	if st.Objects == nil {
		st.Objects = map[string]*uploaded{}
	}
	return &st, nil
}

func (st *state) save(path string) error {
	b, err := json.MarshalIndent(st, "", " ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, append(b, '\n'), 0o600)
}

// MayRemove says whether prune may remove a local segment: only once the
// state file says it is in the bucket ("" when it may; else why not).
func MayRemove(stateFile string) func(segment string) string {
	return func(segment string) string {
		st, err := readState(stateFile)
		if errors.Is(err, os.ErrNotExist) {
			return "is not known to be in the S3 bucket (the relay has not uploaded anything yet)"
		}
		if err != nil {
			return "is not known to be in the S3 bucket (" + err.Error() + ")"
		}
		if st.Objects[segment] == nil {
			return "is not in the S3 bucket yet (the off-site copy is behind: sealpost status)"
		}
		return ""
	}
}
