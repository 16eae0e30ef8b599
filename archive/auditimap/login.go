package auditimap

import (
	"sync"
	"time"

	"github.com/emersion/go-imap/v2/imapserver"
	"golang.org/x/crypto/bcrypt"
)

type failCount struct {
	mu   sync.Mutex
	n    int
	last time.Time
}

// failureMemory is how long failed logins from an address are remembered.
const failureMemory = time.Hour

// unknownUserHash is compared against when the username matches no viewer,
// so a wrong username takes as long to refuse as a wrong password and the
// timing does not tell which usernames exist. It has the viewers' bcrypt
// cost, and is made on first use (every sealpost command links this package).
func (s *Server) unknownUserHash() []byte {
	s.dummyOnce.Do(func() {
		cost := bcrypt.DefaultCost
		if len(s.o.Viewers) > 0 {
			if c, err := bcrypt.Cost([]byte(s.o.Viewers[0].PasswordHash)); err == nil {
				cost = c
			}
		}
		s.dummy, _ = bcrypt.GenerateFromPassword([]byte("no viewer has this password"), cost)
	})
	return s.dummy
}

// failuresFrom returns the failed logins from remote within failureMemory, and
// forgets addresses whose failures are older (the map stays small).
func (s *Server) failuresFrom(remote string, now time.Time) *failCount {
	v, loaded := s.failures.LoadOrStore(remote, &failCount{last: now})
	if !loaded {
		s.failures.Range(func(k, v any) bool {
			fc := v.(*failCount)
			fc.mu.Lock()
			old := now.Sub(fc.last) > failureMemory
			fc.mu.Unlock()
			if old && k != remote {
				s.failures.Delete(k)
			}
			return true
		})
	}
	fc := v.(*failCount)
	fc.mu.Lock()
	if now.Sub(fc.last) > failureMemory {
		fc.n = 0
	}
	fc.mu.Unlock()
	return fc
}

func (ss *session) Login(username, password string) error {
	fc := ss.s.failuresFrom(ss.remote, time.Now())
	// The attempt counts as failed until it succeeds: attempts in parallel
	// connections each see those before them.
	fc.mu.Lock()
	n := fc.n
	fc.n++
	fc.last = time.Now()
	fc.mu.Unlock()
	if n >= 5 {
		// Slower answers after a handful of failures from one address.
		time.Sleep(min(time.Duration(n-4)*time.Second, 10*time.Second))
	}
	// One password check at a time: bcrypt is what an attacker would make
	// the server spend.
	ss.s.bcryptMu.Lock()
	defer ss.s.bcryptMu.Unlock()
	hash, known := ss.s.unknownUserHash(), false
	for _, vw := range ss.s.o.Viewers {
		if vw.Username == username {
			hash, known = []byte(vw.PasswordHash), true
			break
		}
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil && known {
		ss.user = username
		ss.flags = ss.s.viewer(username)
		fc.mu.Lock()
		fc.n = 0
		fc.mu.Unlock()
		ss.s.log.Info("viewer logged in", "user", username)
		return nil
	}
	// An unknown username is not logged: it may be a password typed into
	// the wrong field.
	if known {
		ss.s.log.Warn("viewer login failed", "user", username, "remote", ss.remote)
	} else {
		ss.s.log.Warn("viewer login failed: no such viewer", "remote", ss.remote)
	}
	return imapserver.ErrAuthFailed
}
