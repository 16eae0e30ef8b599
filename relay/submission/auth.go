package submission

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"golang.org/x/crypto/bcrypt"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/password"
)

// Account is a therapist's login and the addresses it may send as.
type Account struct {
	Username     string
	PasswordHash string
	Addresses    []string // as configured

	normalized map[string]bool
}

// Owns reports whether the account may send as address (normalised by
// addr.Strict).
func (a *Account) Owns(address string) bool { return a.normalized[address] }

// accounts verifies logins. Successful verifications are remembered under a
// keyed digest of the password for a while, as Dovecot's auth cache does, so a
// mail client opening many connections does not pay bcrypt's price each time.
type accounts struct {
	byName map[string]*Account
	key    []byte

	mu       sync.Mutex
	cache    map[string]cachedLogin
	inflight map[string]*pendingLogin // by username+digest: one bcrypt for a burst of logins
}

type pendingLogin struct {
	done chan struct{}
	ok   bool
}

type cachedLogin struct {
	digest  []byte
	hash    string
	expires time.Time
}

const loginCacheTTL = 10 * time.Minute

func newAccounts(list []Account) (*accounts, error) {
	as := &accounts{byName: map[string]*Account{}, cache: map[string]cachedLogin{}, inflight: map[string]*pendingLogin{}, key: make([]byte, 32)}
	if _, err := rand.Read(as.key); err != nil {
		return nil, err
	}
	for i := range list {
		a := list[i]
		if err := password.CheckHash(a.PasswordHash); err != nil {
			return nil, fmt.Errorf("account %q: password hash %w", a.Username, err)
		}
		a.normalized = map[string]bool{}
		for _, s := range a.Addresses {
			n, err := addr.Normalize(s)
			if err != nil {
				return nil, fmt.Errorf("account %q: %w", a.Username, err)
			}
			a.normalized[n] = true
		}
		if _, dup := as.byName[a.Username]; dup {
			return nil, fmt.Errorf("account %q configured twice", a.Username)
		}
		as.byName[a.Username] = &a
	}
	return as, nil
}

// dummyHash is compared against when the username is unknown, so that the
// reply time does not tell an attacker which usernames exist.
// It is made on first use: every sealpost command links this package.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("sealpost-dummy-password"), password.Cost)
	return h
})

// verify returns the account for a correct username and password.
func (as *accounts) verify(username, password string, now time.Time) (*Account, bool) {
	a := as.byName[username]
	if a == nil {
		bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		return nil, false
	}
	m := hmac.New(sha256.New, as.key)
	m.Write([]byte(username + "\x00" + password))
	digest := m.Sum(nil)

	as.mu.Lock()
	c, ok := as.cache[username]
	if ok && c.hash == a.PasswordHash && now.Before(c.expires) && subtle.ConstantTimeCompare(c.digest, digest) == 1 {
		as.mu.Unlock()
		return a, true
	}
	// A mail client often opens several connections at once: the same
	// credentials are checked once, the others wait for that answer.
	key := username + "\x00" + string(digest)
	if p, ok := as.inflight[key]; ok {
		as.mu.Unlock()
		<-p.done
		if p.ok {
			return a, true
		}
		return nil, false
	}
	p := &pendingLogin{done: make(chan struct{})}
	as.inflight[key] = p
	as.mu.Unlock()

	p.ok = bcrypt.CompareHashAndPassword([]byte(a.PasswordHash), []byte(password)) == nil
	as.mu.Lock()
	delete(as.inflight, key)
	if p.ok {
		as.cache[username] = cachedLogin{digest: digest, hash: a.PasswordHash, expires: now.Add(loginCacheTTL)}
	}
	as.mu.Unlock()
	close(p.done)
	if !p.ok {
		return nil, false
	}
	return a, true
}

// loginServer is SASL LOGIN (draft-murchison-sasl-login), which go-sasl lacks
// and Outlook still uses: two challenges, "Username:" and "Password:".
type loginServer struct {
	step     int
	username string
	auth     func(username, password string) error
}

func (s *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch s.step {
	case 0:
		s.step++
		// Some clients send the username as an initial response (AUTH LOGIN dXNlcg==).
		if len(response) > 0 {
			s.username = string(response)
			s.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		s.username = string(response)
		s.step++
		return []byte("Password:"), false, nil
	case 2:
		s.step++
		return nil, true, s.auth(s.username, string(response))
	}
	return nil, false, replyUnexpectedLogin.smtp()
}

// plainServer wraps go-sasl's PLAIN server. An authorization identity other
// than the username (acting as another account) counts as a failed login.
func plainServer(auth func(username, password string) error) sasl.Server {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && identity != username {
			return auth(username, "\x00authz-mismatch")
		}
		return auth(username, password)
	})
}

// validSASLText rejects NUL and line breaks in a decoded username, which
// would only ever come from a broken or hostile client.
func validSASLText(s string) bool {
	return !strings.ContainsAny(s, "\x00\r\n")
}
