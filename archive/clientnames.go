package archive

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/record"
)

// ClientAddresses finds, in the consent history the archive itself holds,
// every address recorded for the client with this name or chart id (any
// case): what `archive export --client NAME` exports. It needs the archive
// and its private key only, not the relay's consent registry, so it works
// on an auditor's copy.
func ClientAddresses(ctx context.Context, dir string, key openpgp.EntityList, client string) ([]string, error) {
	consents, err := findRecords(ctx, dir, recordQuery{kinds: []string{kindConsent}})
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	files := &openSegments{dir: dir, files: map[string]*os.File{}}
	defer files.close()
	events, err := decryptAll[record.ConsentEvent](ctx, files, key, consents, "consent")
	if err != nil {
		return nil, err
	}
	want := strings.TrimSpace(client)
	seen := map[string]bool{}
	var out []string
	for _, ev := range events {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !strings.EqualFold(strings.TrimSpace(ev.Client), want) || ev.Kind == record.ProfessionalGiven || ev.Kind == record.ProfessionalRevoked {
			continue // a professional's name is not a client's
		}
		for _, a := range ev.Addresses {
			n, err := addr.Normalize(a)
			if err != nil {
				n = a
			}
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no client %q in the archive's consent history (names and chart ids as recorded with sealpost consent); give an address instead", client)
	}
	sort.Strings(out)
	return out, nil
}
