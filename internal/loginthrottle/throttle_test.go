package loginthrottle

import (
	"net/netip"
	"testing"
	"time"
)

func TestThrottleSchedule(t *testing.T) {
	th := New(nil)
	now := time.Now()
	var delays []time.Duration
	for i := 0; i < 12; i++ {
		delays = append(delays, th.Fail(now, "ip:192.0.2.1"))
	}
	for i, d := range delays[:5] {
		if d != 0 {
			t.Errorf("failure %d delayed %v; the first five are free", i+1, d)
		}
	}
	if delays[5] != time.Second || delays[11] != th.maxDelay {
		t.Errorf("delays %v; want 1s after five failures, growing to %v", delays, th.maxDelay)
	}
	if th.Blocked(now, "ip:192.0.2.1") {
		t.Error("blocked after 12 failures")
	}
	for i := 0; i < 88; i++ {
		th.Fail(now, "ip:192.0.2.1")
	}
	if !th.Blocked(now, "ip:192.0.2.1") || th.Blocked(now, "ip:192.0.2.2") {
		t.Error("the 100th failure must block that address, and only that one")
	}
	if th.Blocked(now.Add(61*time.Minute), "ip:192.0.2.1") {
		t.Error("still blocked after the failures aged out")
	}
}

// TestThrottleSparesKnownAndTrusted: at the account's hourly ceiling,
// logins from the practice's networks and from prefixes that logged in as
// the account before are still let through (IPv4 by address, IPv6 by /64);
// the per-address limit still holds for them; failures from them do not
// count against the account.
func TestThrottleSparesKnownAndTrusted(t *testing.T) {
	now := time.Now()
	ip := netip.MustParseAddr
	tests := []struct {
		name    string
		known   map[string]time.Time // address -> last successful login as "u"
		known2  []string             // logged in as another account
		ipFails int                  // failures from the attempt's own address
		attempt string
		blocked bool
	}{
		{"an address never seen", nil, nil, 0, "203.0.113.9", true},
		{"the practice's network", nil, nil, 0, "192.168.1.20", false},
		{"the practice's network at its own ceiling", nil, nil, 100, "192.168.1.20", true},
		{"an address that logged in before", map[string]time.Time{"198.51.100.7": now.Add(-time.Hour)}, nil, 0, "198.51.100.7", false},
		{"its IPv4 neighbour", map[string]time.Time{"198.51.100.7": now.Add(-time.Hour)}, nil, 0, "198.51.100.8", true},
		{"another address in a known IPv6 /64", map[string]time.Time{"2001:db8:1:2::10": now.Add(-time.Hour)}, nil, 0, "2001:db8:1:2:abcd::1", false},
		{"another /64", map[string]time.Time{"2001:db8:1:2::10": now.Add(-time.Hour)}, nil, 0, "2001:db8:1:3::10", true},
		{"known for another account only", nil, []string{"198.51.100.7"}, 0, "198.51.100.7", true},
		{"known, but over a month ago", map[string]time.Time{"198.51.100.7": now.Add(-31 * 24 * time.Hour)}, nil, 0, "198.51.100.7", true},
		{"known, at its own ceiling", map[string]time.Time{"198.51.100.7": now.Add(-time.Hour)}, nil, 100, "198.51.100.7", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			th := New([]netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")})
			for a, when := range tt.known {
				th.Succeeded(when, ip(a), "u")
			}
			for _, a := range tt.known2 {
				th.Succeeded(now, ip(a), "v")
			}
			for i := 0; i < 100; i++ { // guessing from everywhere
				th.Fail(now, th.Keys(now, netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), "u")...)
			}
			for i := 0; i < tt.ipFails; i++ {
				th.Fail(now, "ip:"+Prefix(ip(tt.attempt)).String())
			}
			if got := th.Blocked(now, th.Keys(now, ip(tt.attempt), "u")...); got != tt.blocked {
				t.Errorf("blocked = %v, want %v", got, tt.blocked)
			}
		})
	}

	t.Run("their failures do not count against the account", func(t *testing.T) {
		th := New([]netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")})
		th.Succeeded(now, ip("198.51.100.7"), "u")
		for i := 0; i < 150; i++ {
			th.Fail(now, th.Keys(now, netip.AddrFrom4([4]byte{192, 168, 1, byte(i)}), "u")...)
			th.Fail(now, th.Keys(now, ip("198.51.100.7"), "u")...)
		}
		if th.Blocked(now, th.Keys(now, ip("203.0.113.1"), "u")...) {
			t.Error("failures from trusted and known addresses locked the account")
		}
	})

	t.Run("memory is bounded", func(t *testing.T) {
		th := New(nil)
		for i := 0; i < 3*knownPerAccount; i++ {
			th.Succeeded(now.Add(time.Duration(i)*time.Second), netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), "u")
		}
		th.Succeeded(now, ip("198.51.100.95"), "u") // seen again: kept, not doubled
		list := th.known["u"]
		if len(list) != knownPerAccount || list[len(list)-1].prefix != Prefix(ip("198.51.100.95")) {
			t.Fatalf("%d prefixes remembered, last %v; want %d, the latest last", len(list), list[len(list)-1].prefix, knownPerAccount)
		}
		if th.spared(now, ip("198.51.100.0"), Prefix(ip("198.51.100.0")), "u") {
			t.Error("the oldest prefix is still remembered")
		}
	})
}
