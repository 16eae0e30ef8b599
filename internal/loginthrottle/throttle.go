// Package loginthrottle slows and stops password guessing against the
// logins sealpost checks itself: SMTP AUTH and the web console.
package loginthrottle

import (
	"net/netip"
	"sync"
	"time"
)

// Throttle counts failed logins per client address (clientPrefix: an IPv6
// client by its /64) and per username. After a handful, every further
// failure is answered more slowly; at the hourly ceiling the key is refused
// outright until its failures age out.
//
// The per-account count is what stops guessing spread over many addresses,
// but anyone can make it reach the ceiling and so lock the therapist out.
// Two kinds of client are therefore counted by their address alone, and
// the account's ceiling does not refuse them: the practice's own networks
// ([smtp] trusted_networks), and a prefix that has logged in as that
// account before (remembered in memory only, so a restart forgets them
// and the first login after it counts as from anywhere).
type Throttle struct {
	mu       sync.Mutex
	failures map[string][]time.Time
	ceiling  int           // failures per hour that block the key
	free     int           // failures per hour answered without delay
	maxDelay time.Duration // longest delay before a failure reply

	trusted []netip.Prefix
	known   map[string][]knownClient // by username, most recent login last
}

// knownClient is a client prefix that logged in as an account.
type knownClient struct {
	prefix netip.Prefix
	last   time.Time
}

// A practice's therapists log in from a few places each (the practice, home,
// a phone's networks); beyond these the oldest is forgotten. Memory is
// bounded by accounts times knownPerAccount: only logins that succeeded add.
const (
	knownPerAccount = 32
	knownFor        = 30 * 24 * time.Hour
)

// New is a throttle that spares the trusted networks from the
// per-account ceiling.
func New(trusted []netip.Prefix) *Throttle {
	return &Throttle{failures: map[string][]time.Time{}, ceiling: 100, free: 5, maxDelay: 15 * time.Second,
		trusted: trusted, known: map[string][]knownClient{}}
}

// Keys are what a login as username from ip counts against: its address
// (prefix), and the account unless ip is trusted or known for it.
func (t *Throttle) Keys(now time.Time, ip netip.Addr, username string) []string {
	p := Prefix(ip)
	keys := []string{"ip:" + p.String()}
	if !t.spared(now, ip, p, username) {
		keys = append(keys, "user:"+username)
	}
	return keys
}

func (t *Throttle) spared(now time.Time, ip netip.Addr, p netip.Prefix, username string) bool {
	if !ip.IsValid() {
		return false
	}
	for _, n := range t.trusted {
		if n.Contains(ip) {
			return true
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range t.known[username] {
		if k.prefix == p && now.Sub(k.last) < knownFor {
			return true
		}
	}
	return false
}

// Succeeded remembers that ip logged in as username.
func (t *Throttle) Succeeded(now time.Time, ip netip.Addr, username string) {
	if !ip.IsValid() {
		return
	}
	p := Prefix(ip)
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.known[username]
	list := make([]knownClient, 0, min(len(old)+1, knownPerAccount))
	for _, k := range old {
		if k.prefix != p && now.Sub(k.last) < knownFor {
			list = append(list, k)
		}
	}
	if len(list) >= knownPerAccount {
		list = list[len(list)-knownPerAccount+1:]
	}
	t.known[username] = append(list, knownClient{prefix: p, last: now})
}

func (t *Throttle) recent(key string, now time.Time) int {
	ts := t.failures[key]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) > time.Hour {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(t.failures, key)
	} else {
		t.failures[key] = ts
	}
	return len(ts)
}

// Blocked reports whether any of keys reached the hourly ceiling.
func (t *Throttle) Blocked(now time.Time, keys ...string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		if t.recent(k, now) >= t.ceiling {
			return true
		}
	}
	return false
}

// Fail records a failure for every key and returns how long to wait before
// answering it: nothing for the first few, then doubling up to maxDelay.
func (t *Throttle) Fail(now time.Time, keys ...string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	worst := 0
	for _, k := range keys {
		n := t.recent(k, now) + 1
		t.failures[k] = append(t.failures[k], now)
		worst = max(worst, n)
	}
	if worst <= t.free {
		return 0
	}
	d := time.Second << min(worst-t.free-1, 10)
	return min(d, t.maxDelay)
}

// Reset forgets every failure (tests that feed many logins).
func (t *Throttle) Reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.failures)
}

// Prefix is what a client address is counted by: an IPv4 address itself,
// an IPv6 address by its /64 (one host usually has a whole /64).
func Prefix(ip netip.Addr) netip.Prefix {
	if !ip.IsValid() {
		return netip.Prefix{}
	}
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}
