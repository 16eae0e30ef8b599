package provider

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sealpost/sealpost/relay/internal/dirsync"
)

// Outbox "delivers" into a Maildir below the data dir: the newcomer's
// default, and a way for a practice to try sealpost without a provider. One
// file per copy and recipient, starting with Return-Path: and Delivered-To:
// as local delivery agents write them.
type Outbox struct {
	dir     string
	seq     int64
	mu      sync.Mutex
	newSync *dirsync.Group
}

// NewOutbox makes the Maildir's folders if they are missing.
func NewOutbox(dir string) (*Outbox, error) {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("outbox: %w", err)
		}
	}
	return &Outbox{dir: dir, newSync: dirsync.New(filepath.Join(dir, "new"))}, nil
}

// Deliver writes one file per recipient.
func (o *Outbox) Deliver(ctx context.Context, j *Job) []Outcome {
	from, rcpts, err := j.wireAddresses()
	if err != nil {
		return allOutcomes(j, err, true)
	}
	out := make([]Outcome, len(j.Recipients))
	for i, r := range j.Recipients {
		name, err := o.write(j, from, rcpts[i])
		out[i] = Outcome{Recipient: r, Err: err, Reply: describe(err)}
		if err == nil {
			out[i].Reply = "250 2.0.0 delivered to outbox as " + name
		}
	}
	return out
}

func (o *Outbox) write(j *Job, from, rcpt string) (string, error) {
	o.mu.Lock()
	o.seq++
	name := fmt.Sprintf("%d.%s_%d.sealpost", time.Now().Unix(), j.ID, o.seq)
	o.mu.Unlock()
	body, err := j.Open()
	if err != nil {
		return "", err
	}
	defer body.Close()
	tmp := filepath.Join(o.dir, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("outbox: %w", err)
	}
	_, err = fmt.Fprintf(f, "Return-Path: <%s>\r\nDelivered-To: %s\r\n", from, rcpt)
	if err == nil {
		_, err = io.Copy(f, body)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("outbox: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(o.dir, "new", name)); err != nil {
		return "", fmt.Errorf("outbox: %w", err)
	}
	return name, o.newSync.Sync()
}

// Close does nothing: the outbox holds nothing open.
func (o *Outbox) Close() {}
