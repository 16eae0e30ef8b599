package rules

import (
	"path/filepath"
	"testing"

	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/internal/testutil"
)

// testPostgres, while set, makes openRegistryAt open registries in the
// shared PostgreSQL server instead of SQLite files: one database per
// path, so two handles on one path are two processes on one registry.
var testPostgres struct {
	server *testutil.Postgres
	dbs    map[string]string
}

// openRegistryAt opens the registry of the backend under test at path.
func openRegistryAt(t testing.TB, path string) (*Registry, error) {
	t.Helper()
	if testPostgres.server == nil {
		return OpenRegistry(path)
	}
	url, ok := testPostgres.dbs[path]
	if !ok {
		url = testPostgres.server.NewDatabase()
		testPostgres.dbs[path] = url
	}
	db, err := store.OpenPostgres(store.Postgres{URL: url})
	if err != nil {
		return nil, err
	}
	return OpenRegistryPostgres(db, filepath.Dir(path))
}

// TestRegistryOnPostgres runs the registry's behaviour tests again with
// the registry in PostgreSQL (the SQLite run is the tests' own).
func TestRegistryOnPostgres(t *testing.T) {
	testPostgres.server, testPostgres.dbs = testutil.StartPostgres(t), map[string]string{}
	defer func() { testPostgres.server = nil }()
	for _, tc := range []struct {
		name string
		test func(*testing.T)
	}{
		{"HistoryIsAppendOnly", TestRegistryHistoryIsAppendOnly},
		{"ConsentExpiry", TestConsentExpiry},
		{"ConsentValidation", TestConsentValidation},
		{"Import", TestImport},
		{"PassphraseRoundTrip", TestPassphraseRoundTrip},
		{"PassphraseValidation", TestPassphraseValidation},
		{"ImportPassphrases", TestImportPassphrases},
		{"Decide", TestDecide},
		{"CurrentStanding", TestCurrentStanding},
		{"RevocationSeenByRunningRelay", TestRevocationSeenByRunningRelay},
		{"ConsentWithdrawnBeforeData", TestConsentWithdrawnBeforeData},
		{"DecideProfessional", TestDecideProfessional},
		{"ProfessionalsApartFromClients", TestProfessionalsApartFromClients},
		{"AddProfessionalValidation", TestAddProfessionalValidation},
		{"SearchClients", TestSearchClients},
		{"ListPagesAsCurrent", TestListPagesAsCurrent},
		{"AcknowledgementLog", TestAcknowledgementLog},
		{"AcknowledgementOncePerClosedStretch", TestAcknowledgementOncePerClosedStretch},
		{"HoldDuringAbsence", TestHoldDuringAbsence},
		{"HoldSparesNoHoldClientsAndAcknowledgements", TestHoldSparesNoHoldClientsAndAcknowledgements},
		{"LoginCodes", TestLoginCodes},
	} {
		t.Run(tc.name, tc.test)
	}
}
