package console

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"sync"
	"time"
)

// A session ends after idleLimit without a request, and absoluteLimit
// after its login however busy: a console left open on a shared computer
// in a practice does not stay usable for long.
const (
	idleLimit     = 30 * time.Minute
	absoluteLimit = 12 * time.Hour
)

// sessionCookie carries the session's token. __Host- makes browsers refuse
// it unless it is Secure, for this host only and for every path.
const sessionCookie = "__Host-sealpost-session"

// A session's stage: fully logged in, waiting for the TOTP code after the
// password, or made to set up TOTP first (an admin where codes are
// required). Only the routes for its stage open.
const (
	stageFull   = ""
	stageCode   = "code"
	stageEnroll = "enroll"
)

// session is one login's time in the console, kept on the server only; the
// browser holds a random token that names it.
type session struct {
	key          string // the table's key for it (set on the copies get returns)
	stage        string
	enrollSecret string // a TOTP secret being set up, until confirmed
	user         string
	role         Role
	passwordHash string // the login's at the time: a new one ends the session
	csrf         string // the token every form of this session carries
	created      time.Time
	seen         time.Time
}

// sessions are kept by the SHA-256 of their token, so the table holds no
// token a browser could present.
type sessions struct {
	mu   sync.Mutex
	byID map[string]*session
}

func newSessions() *sessions { return &sessions{byID: map[string]*session{}} }

// randomToken is 32 random bytes, URL-safe.
func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

func tokenKey(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// start opens a session for l at a stage and returns its token.
func (ss *sessions) start(l Login, stage string, now time.Time) (string, *session) {
	token := randomToken()
	s := &session{stage: stage, user: l.Username, role: l.Role, passwordHash: l.PasswordHash, csrf: randomToken(), created: now, seen: now}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for k, old := range ss.byID { // the table never grows with abandoned sessions
		if old.expired(now) {
			delete(ss.byID, k)
		}
	}
	ss.byID[tokenKey(token)] = s
	return token, s
}

func (s *session) expired(now time.Time) bool {
	return now.Sub(s.seen) > idleLimit || now.Sub(s.created) > absoluteLimit
}

// get returns the live session a token names and marks it used; expired
// says the token named one that has just ended by time.
func (ss *sessions) get(token string, now time.Time) (s *session, expired bool) {
	if token == "" {
		return nil, false
	}
	k := tokenKey(token)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s = ss.byID[k]
	if s == nil {
		return nil, false
	}
	if s.expired(now) {
		delete(ss.byID, k)
		return nil, true
	}
	s.seen = now
	c := *s
	c.key = k
	return &c, false
}

// update changes the session stored under key.
func (ss *sessions) update(key string, f func(*session)) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s := ss.byID[key]; s != nil {
		f(s)
	}
}

// end ends the session stored under key (logout).
func (ss *sessions) end(key string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.byID, key)
}

// endUnless ends every session keep does not approve.
func (ss *sessions) endUnless(keep func(*session) bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for k, s := range ss.byID {
		if !keep(s) {
			delete(ss.byID, k)
		}
	}
}
