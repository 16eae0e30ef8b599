package status

import (
	"strings"
	"testing"
	"time"
)

// TestJudge: each condition an admin must act on gives its warning in
// plain words, and a healthy report gives none.
func TestJudge(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	healthy := func() *Report {
		return &Report{Provider: "smtp.example.com:587", Relay: &Relay{ProviderLastOK: now.Add(-time.Minute)},
			Queue:        Queue{Messages: 1, Oldest: now.Add(-5 * time.Minute)},
			Certificates: []Expiry{{What: "certificate", Path: "/tls/cert.pem", Expires: now.AddDate(0, 3, 0)}},
			Verified:     &ArchiveCheck{Time: now.Add(-time.Hour), OK: true},
			Disk:         &Disk{Path: "/var/lib/sealpost", Free: 50 << 30, Total: 100 << 30}}
	}
	tests := []struct {
		name   string
		change func(*Report)
		want   string // "" for no warning
	}{
		{"healthy", func(*Report) {}, ""},
		{"queue waits", func(r *Report) { r.Queue.Oldest = now.Add(-3 * time.Hour) }, "a message has waited in the queue for 3h 0m"},
		{"provider quiet", func(r *Report) { r.Relay.ProviderLastOK = now.Add(-11 * time.Minute) }, "the provider was not reached"},
		{"outbox needs no provider", func(r *Report) { r.Provider = "outbox"; r.Relay.ProviderLastOK = time.Time{} }, ""},
		{"certificate ends soon", func(r *Report) { r.Certificates[0].Expires = now.AddDate(0, 0, 10) }, "certificate /tls/cert.pem ends on 2026-12-17"},
		{"next CA waits", func(r *Report) {
			r.Certificates = append(r.Certificates, Expiry{What: "next local CA", Path: "/tls/ca-next.pem", Expires: now.AddDate(5, 0, 0)})
		}, "a new local CA waits to take over: give /tls/ca-next.pem"},
		{"never verified", func(r *Report) { r.Verified = nil }, "has not verified the archive yet"},
		{"verification failed", func(r *Report) { r.Verified = &ArchiveCheck{Time: now, Problems: []string{"seg 3: hash"}} }, "THE ARCHIVE FAILED VERIFICATION"},
		{"verified long ago", func(r *Report) { r.Verified.Time = now.Add(-72 * time.Hour) }, "the archive was last verified 3d 0h ago"},
		{"disk nearly full", func(r *Report) { r.Disk.Free = 1 << 30 }, "the disk of data_dir /var/lib/sealpost has 1.0 GB free of 100.0 GB"},
		{"a small disk, 5% free", func(r *Report) { r.Disk = &Disk{Path: "/d", Free: 3 << 30, Total: 80 << 30} }, "has 3.0 GB free of 80.0 GB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := healthy()
			tt.change(r)
			r.Judge(now, 24*time.Hour)
			switch {
			case tt.want == "" && len(r.Warnings) > 0:
				t.Errorf("warnings %q", r.Warnings)
			case tt.want != "" && (len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], tt.want)):
				t.Errorf("warnings %q, want one with %q", r.Warnings, tt.want)
			}
		})
	}
}

func TestWords(t *testing.T) {
	now := time.Now()
	for _, tt := range []struct{ got, want string }{
		{Ago(now, now.Add(-40*time.Second)), "40s"},
		{Ago(now, now.Add(-125*time.Minute)), "2h 5m"},
		{Ago(now, now.Add(-76*time.Hour)), "3d 4h"},
		{Bytes(512 << 20), "512 MB"},
		{Bytes(300), "300 bytes"},
		{Bytes(4096), "4 KB"},
		{Bytes(3<<30 + 1<<28), "3.2 GB"},
		{ExpiryText(Expiry{What: "k"}, now), "none"},
		{ExpiryText(Expiry{Path: "/k.asc"}, now), "/k.asc, no expiry"},
	} {
		if tt.got != tt.want {
			t.Errorf("%q, want %q", tt.got, tt.want)
		}
	}
}

func TestDiskOf(t *testing.T) {
	d, err := DiskOf(t.TempDir())
	if err != nil || d.Total == 0 || d.Free > d.Total {
		t.Fatalf("%+v %v", d, err)
	}
	if _, err := DiskOf("/does/not/exist"); err == nil {
		t.Error("no error for a missing folder")
	}
}
