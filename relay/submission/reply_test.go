package submission

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/sealpost/sealpost/rules"
)

func TestRefusalReasonLabels(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tests := []struct {
		stage string
		err   error
		want  string
	}{
		{"rcpt", &rules.Refusal{Reason: "no consent"}, "recipient_policy"},
		{"data", &rules.Refusal{Reason: "consent withdrawn", Recipient: true}, "recipient_policy"},
		{"data", &rules.Refusal{Reason: "rule us-ssn"}, "content_rule"},
		{"data", &rules.Refusal{Reason: "a closing boundary is missing", Malformed: true}, "malformed"},
	}
	for _, tt := range tests {
		if got := replyFor(context.Background(), log, tt.stage, tt.err).reason; got != tt.want {
			t.Errorf("replyFor(%s, %v).reason = %q, want %q", tt.stage, tt.err, got, tt.want)
		}
	}
}
