package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/record"
)

// TestConsoleTodayCounts: the Today page counts the day's refusals and
// messages from the real archive: the admin all of them, a therapist their
// own; a refusal recorded while the page is open
// shows at the next visit.
func TestConsoleTodayCounts(t *testing.T) {
	ctx := context.Background()
	cfg, hash := initPractice(t, "test password")
	cfg.Console.Admins = []config.ConsoleAdminConfig{{Username: "office", PasswordHash: string(hash)}}
	cfg.Accounts = []config.AccountConfig{{Username: "anna", PasswordHash: string(hash), Addresses: []string{"anna@practice.example"}},
		{Username: "ben", PasswordHash: string(hash), Addresses: []string{"ben@practice.example"}}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pa, err := openPolicyAndArchive(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pa.close)
	now := time.Now()
	refuse := func(account string) {
		t.Helper()
		if err := pa.arch.RecordRefusal(ctx, archive.RefusalRecord{Time: time.Now(), Account: account, Recipient: "nobody@client.example",
			Reason: "nothing on file", Ref: record.NewRef(), Code: "nothing_on_file"}); err != nil {
			t.Fatal(err)
		}
	}
	refuse("anna")
	refuse("ben")
	refuse("ben")
	srv, err := newConsole(cfg, nil, pa, func() relayState { return relayState{Since: now} }, &benchQueue{}, log)
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	today := func(user string) string {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, "https://console.test/today", nil)
		req.AddCookie(benchLogin(t, h, user, "test password"))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s's Today: %d", user, rec.Code)
		}
		return rec.Body.String()
	}
	for _, tt := range []struct{ user, want string }{
		{"office", "3 recipients or messages refused today"},
		{"anna", "1 recipient or message refused today"},
		{"ben", "2 recipients or messages refused today"},
	} {
		if body := today(tt.user); !strings.Contains(body, tt.want) {
			t.Errorf("%s's Today lacks %q:\n%s", tt.user, tt.want, body)
		}
	}
	if body := today("office"); !strings.Contains(body, "3 refusals") {
		t.Errorf("the admin's record of the day lacks 3 refusals:\n%s", body)
	}
	refuse("anna")
	for user, want := range map[string]string{"office": "4 recipients or messages", "anna": "2 recipients or messages"} {
		if body := today(user); !strings.Contains(body, fmt.Sprintf("%s refused today", want)) {
			t.Errorf("after another refusal, %s's Today lacks %q", user, want)
		}
	}
}
