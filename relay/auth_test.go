package relay

import (
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestLoginVerification(t *testing.T) {
	h, _ := bcrypt.GenerateFromPassword([]byte("secret-1"), bcrypt.MinCost)
	as, err := newAccounts([]Account{{Username: "u", PasswordHash: string(h), Addresses: []string{"u@practice.example"}}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// A burst of concurrent logins, right and wrong, each gets its own answer.
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			pw, want := "secret-1", true
			if i%3 == 0 {
				pw, want = "wrong", false
			}
			if _, ok := as.verify("u", pw, now); ok != want {
				t.Errorf("login %d with %q: %v", i, pw, ok)
			}
		}(i)
	}
	wg.Wait()
	if _, ok := as.verify("nobody", "secret-1", now); ok {
		t.Error("unknown user logged in")
	}
	// The cache never outlives a password change or its lifetime.
	h2, _ := bcrypt.GenerateFromPassword([]byte("secret-2"), bcrypt.MinCost)
	as.byName["u"].PasswordHash = string(h2)
	if _, ok := as.verify("u", "secret-1", now); ok {
		t.Error("old password accepted from the cache after a change")
	}
	if _, ok := as.verify("u", "secret-2", now.Add(2*loginCacheTTL)); !ok {
		t.Error("new password refused")
	}
}

func TestThrottleSchedule(t *testing.T) {
	th := newThrottle(nil)
	now := time.Now()
	var delays []time.Duration
	for i := 0; i < 12; i++ {
		delays = append(delays, th.fail(now, "ip:192.0.2.1"))
	}
	for i, d := range delays[:5] {
		if d != 0 {
			t.Errorf("failure %d delayed %v; the first five are free", i+1, d)
		}
	}
	if delays[5] != time.Second || delays[11] != th.maxDelay {
		t.Errorf("delays %v; want 1s after five failures, growing to %v", delays, th.maxDelay)
	}
	if th.blocked(now, "ip:192.0.2.1") {
		t.Error("blocked after 12 failures")
	}
	for i := 0; i < 88; i++ {
		th.fail(now, "ip:192.0.2.1")
	}
	if !th.blocked(now, "ip:192.0.2.1") || th.blocked(now, "ip:192.0.2.2") {
		t.Error("the 100th failure must block that address, and only that one")
	}
	if th.blocked(now.Add(61*time.Minute), "ip:192.0.2.1") {
		t.Error("still blocked after the failures aged out")
	}
}
