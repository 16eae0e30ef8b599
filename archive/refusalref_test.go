package archive

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestFindRefusalsWithoutTheKey: a refusal's reference, reason code and
// account are found from the clear headers alone, beside a running
// archive; the recipient can be told only by whoever knows the address;
// an export carries the reference and the code.
func TestFindRefusalsWithoutTheKey(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	defer a.Close()
	ctx := context.Background()
	refusals := []RefusalRecord{
		{Time: f.now, Account: "therapist", Recipient: "carl@client.example", Reason: "<carl@client.example> has nothing on file", Ref: "R7K2QX", Code: "nothing_on_file"},
		{Time: f.now.Add(time.Minute), Account: "therapist", Reason: "rule us-ssn", Ref: "K3M9TP", Code: "content_rule"},
		{Time: f.now.Add(2 * time.Minute), Account: "other", Recipient: "dora@client.example", Reason: "nothing on file", Ref: "R7K2QX", Code: "consent_revoked"},
	}
	for _, r := range refusals {
		if err := a.RecordRefusal(ctx, r); err != nil {
			t.Fatal(err)
		}
		f.advance(time.Minute)
	}
	got, err := FindRefusals(f.dir, "R7K2QX", time.Time{})
	if err != nil || len(got) != 2 {
		t.Fatalf("FindRefusals: %+v %v; want the two records with the reference", got, err)
	}
	if got[0].Account != "therapist" || got[0].Code != "nothing_on_file" || !got[0].Recipient || !got[0].Is("Carl@client.example") || got[0].Is("dora@client.example") {
		t.Errorf("first: %+v", got[0])
	}
	if got[1].Account != "other" || !got[1].Is("dora@client.example") {
		t.Errorf("second: %+v", got[1])
	}
	hash, err := AddressHasher(f.dir)
	if err != nil || hash("Dora@Client.Example") != got[1].AddressHash() || hash("carl@client.example") == got[1].AddressHash() {
		t.Errorf("AddressHasher: %v", err)
	}
	if got, _ := FindRefusals(f.dir, "", refusals[0].Time.Add(30*time.Second)); len(got) != 2 || got[0].Ref != "K3M9TP" || got[0].Recipient {
		t.Errorf("since a time: %+v", got)
	}
	a.Close()
	out := filepath.Join(t.TempDir(), "export")
	if _, err := Export(ctx, f.dir, f.priv, out, Filter{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Refusals []RefusalRecord `json:"refusals"`
	}
	if err := json.Unmarshal(b, &m); err != nil || len(m.Refusals) != 3 || m.Refusals[1].Ref != "K3M9TP" || m.Refusals[1].Code != "content_rule" {
		t.Fatalf("the export's refusals: %+v %v", m.Refusals, err)
	}
}
