package console

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"golang.org/x/crypto/bcrypt"

	"github.com/sealpost/sealpost/internal/password"
)

// Role is what a login may see and do in the console.
type Role string

const (
	// Admin: everything, and the only role that changes anything beyond
	// retrying and dropping its own queued mail.
	Admin Role = "admin"
	// Therapist: their own refusals and queued mail.
	Therapist Role = "therapist"
	// Auditor: the record's health; changes nothing.
	Auditor Role = "auditor"
)

// Login is one person who may log in: [[console.admin]], an [[account]]
// (a therapist) or an [[archive.viewer]] (an auditor).
type Login struct {
	Username     string
	PasswordHash string // bcrypt, from sealpost passwd
	Role         Role
}

type loginTable struct{ byName map[string]Login }

// SetLogins replaces who may log in (at start and on every reload). A
// session of a login that is gone, or whose password hash changed, ends:
// changing a password in the configuration logs out everyone who used the
// old one.
func (s *Server) SetLogins(list []Login) error {
	t := &loginTable{byName: map[string]Login{}}
	for _, l := range list {
		if err := password.CheckHash(l.PasswordHash); err != nil {
			return fmt.Errorf("console: login %q: password hash %w", l.Username, err)
		}
		switch l.Role {
		case Admin, Therapist, Auditor:
		default:
			return fmt.Errorf("console: login %q: unknown role %q", l.Username, l.Role)
		}
		if _, dup := t.byName[l.Username]; dup {
			return fmt.Errorf("console: two logins are called %q", l.Username)
		}
		t.byName[l.Username] = l
	}
	if old := s.logins.Swap(t); old != nil {
		s.noteLoginChanges(old, t)
	}
	s.sessions.endUnless(func(ss *session) bool {
		l, ok := t.byName[ss.user]
		return ok && l.PasswordHash == ss.passwordHash && l.Role == ss.role
	})
	return nil
}

// configReload stands in for who and where of a change made in the
// configuration file: a reload does not know who edited it.
const configReload = "configuration reload on the server"

// noteLoginChanges puts the logins a reload added, removed or gave a new
// password hash or role into the activity log: who may open the console
// (and, for accounts, send mail) is as much the auditor's business as a
// consent.
func (s *Server) noteLoginChanges(old, now *loginTable) {
	if s.o.Activity == nil {
		return
	}
	var changes []Activity
	for _, name := range slices.Sorted(maps.Keys(now.byName)) {
		l, was := now.byName[name], old.byName[name]
		object := name + " (" + string(l.Role) + ")"
		switch {
		case was.Username == "":
			changes = append(changes, Activity{What: "login-added", Object: object})
		case was.PasswordHash != l.PasswordHash:
			changes = append(changes, Activity{What: "login-password-changed", Object: object})
		case was.Role != l.Role:
			changes = append(changes, Activity{What: "login-role-changed", Object: object})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(old.byName)) {
		if _, ok := now.byName[name]; !ok {
			changes = append(changes, Activity{What: "login-removed", Object: name + " (" + string(old.byName[name].Role) + ")"})
		}
	}
	for _, a := range changes {
		a.Time, a.Who, a.Role, a.From = s.o.Now(), "the configuration file", "configuration", configReload
		if err := s.o.Activity.Record(context.Background(), a); err != nil {
			s.log.Error("console: a login changed, but its activity record could not be written", "what", a.What, "err", err)
		}
	}
}

// dummyHash is compared against for an unknown username, so that the
// answer's time does not tell which usernames exist.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("sealpost-console-dummy"), password.Cost)
	return h
})

// verify returns the login for a correct username and password.
func (s *Server) verify(username, pw string) (Login, bool) {
	l, ok := s.logins.Load().byName[username]
	if !ok {
		bcrypt.CompareHashAndPassword(dummyHash(), []byte(pw))
		return Login{}, false
	}
	if bcrypt.CompareHashAndPassword([]byte(l.PasswordHash), []byte(pw)) != nil {
		return Login{}, false
	}
	return l, true
}
