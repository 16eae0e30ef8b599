package status

import (
	"strings"
	"testing"
	"time"
)

// TestOffsiteWarning: a lag tail_interval explains is no warning; past it
// the warning says how far behind in words, and why when S3 did not answer
// or refused.
func TestOffsiteWarning(t *testing.T) {
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	where := "https://s3.practice.example (bucket record)"
	tests := []struct {
		name       string
		o          Offsite
		want, line string
	}{
		{"up to date", Offsite{Where: where, TailSeconds: 300}, "", where + ", up to date"},
		{"within the tail interval", Offsite{Where: where, LagSeconds: 290, Pending: 1, TailSeconds: 300}, "",
			where + ", 1 object(s) waiting, 4 minutes behind (the unsealed records go up every 5 minutes)"},
		{"S3 just stopped answering", Offsite{Where: where, LagSeconds: 5, Pending: 2, Unreachable: true, LastError: "dial tcp: connection refused", TailSeconds: 300}, "",
			where + " does not answer: 2 object(s) waiting, 5 seconds behind"},
		{"S3 does not answer", Offsite{Where: where, LagSeconds: 12 * 60, Pending: 3, Unreachable: true, LastError: "dial tcp: connection refused", TailSeconds: 60},
			"the off-site copy of the record is 12 minutes behind: the S3 server at https://s3.practice.example (bucket record) does not answer (3 object(s) waiting;", "does not answer"},
		{"S3 refuses", Offsite{Where: where, LagSeconds: 2*3600 + 300, Pending: 1, LastError: "Access Denied.", TailSeconds: 300},
			"the off-site copy of the record is 2 hours 5 minutes behind: the S3 server at https://s3.practice.example (bucket record) refuses the uploads: Access Denied.",
			where + " refuses the uploads (Access Denied.): 1 object(s) waiting, 2 hours 5 minutes behind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &Report{Relay: &Relay{Offsite: &tt.o, ProviderLastOK: now}, Provider: "outbox", Verified: &ArchiveCheck{Time: now, OK: true}}
			st.Judge(now, 24*time.Hour)
			got := strings.Join(st.Warnings, "\n")
			if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
				t.Errorf("warnings %q, want %q", got, tt.want)
			}
			if line := tt.o.Text(); !strings.Contains(line, tt.line) {
				t.Errorf("status line %q, want %q", line, tt.line)
			}
		})
	}
}
