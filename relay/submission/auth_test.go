package submission

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
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

func TestAuthThrottle(t *testing.T) {
	var mu sync.Mutex
	var delays []time.Duration
	r := startServer(t, serverOpts{authDelay: func(_ context.Context, d time.Duration) {
		mu.Lock()
		delays = append(delays, d)
		mu.Unlock()
	}})
	c := r.dial(t)
	for i := 0; i < 12; i++ {
		if got := smtpCode(c.Auth(sasl.NewPlainClient("", testUser, "wrong"))); got != "535 5.7.8" && got != "421 4.7.0" {
			t.Fatalf("attempt %d: %s", i, got)
		}
		if i%3 == 2 { // go-smtp ends sessions after a few errors; come back like an attacker would
			c = r.dial(t)
		}
	}
	mu.Lock()
	if len(delays) < 5 || delays[0] != time.Second || delays[len(delays)-1] <= delays[0] {
		t.Errorf("failed logins after the first five were delayed %v; want growing delays from 1s", delays)
	}
	mu.Unlock()
	// At the hourly ceiling even the right password is refused for a while.
	for i := 0; i < 100; i++ {
		r.throttle.Fail(time.Now(), "user:"+testUser)
	}
	if got := smtpCode(r.dial(t).Auth(sasl.NewPlainClient("", testUser, testPassword))); got != "454 4.7.0" {
		t.Fatalf("login at the ceiling: %s, want 454 4.7.0", got)
	}
}
