package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/sealpost/sealpost/record"
)

// manifest is manifest.json, the index of an export (ARCHITECTURE.md, the
// export layout).
type manifest struct {
	Format     int             `json:"sealpost_export"`
	ExportedAt time.Time       `json:"exported_at"`
	Archive    manifestArchive `json:"archive"`
	// Chains are the relays' chains the export was made from, one entry
	// each; Archive is their sum when there are several.
	Chains   []manifestChain   `json:"chains"`
	Filter   manifestFilter    `json:"filter"`
	Messages []manifestMessage `json:"messages"`
	Refusals []manifestRefusal `json:"refusals"`
	Consent  []exportedConsent `json:"consent_history"`
	// Evidence are the scans of signed forms (evidence/ID.EXT), Activity
	// the changes made in the console, that the selection covers.
	Evidence []manifestEvidence `json:"evidence"`
	Activity []manifestActivity `json:"activity"`
}

// manifestChain is one relay's chain in an export: its node's name
// (NodeName) and what was checked of it.
type manifestChain struct {
	Node string `json:"node"`
	manifestArchive
}

// manifestActivity is a console change and the node whose console it was.
type manifestActivity struct {
	Activity
	Node string `json:"node,omitempty"`
}

type manifestArchive struct {
	// The chain head, and the seal key below, are each chain's in Chains
	// when an export holds several: there is no one chain head then.
	ChainHeadSeq uint64 `json:"chain_head_seq,omitempty"`
	ChainHead    string `json:"chain_head,omitempty"`
	Verified     bool   `json:"verified"`
	// RecordsChecked: every record in the export matched its hashes, and
	// the chain head the head file (verified: the whole archive too).
	RecordsChecked bool `json:"records_checked"`
	// Records written after the chain head, left out of the export.
	RecordsAfterHead int      `json:"records_after_head,omitempty"`
	Problems         []string `json:"problems,omitempty"`
	SealKey          string   `json:"seal_key,omitempty"`
	// SealKeyFingerprint is the OpenPGP fingerprint of seal-key.asc, the
	// seal key that signed SHA256SUMS (SHA256SUMS.asc).
	SealKeyFingerprint string `json:"seal_key_fingerprint,omitempty"`
}

type manifestFilter struct {
	Since   string   `json:"since,omitempty"`
	Until   string   `json:"until,omitempty"`
	Clients []string `json:"clients,omitempty"`
	// ClientName is the name or chart id --client gave, when it was one.
	ClientName string `json:"client_name,omitempty"`
}

type manifestMessage struct {
	ID string `json:"id"`
	// Node is the relay whose chain holds the message (in an export of
	// several chains always, of one when its records name a node).
	Node       string              `json:"node,omitempty"`
	Time       time.Time           `json:"time"`
	Direction  Direction           `json:"direction"`
	Account    string              `json:"account,omitempty"`
	From       string              `json:"from"`
	Sender     string              `json:"envelope_sender,omitempty"`
	Subject    string              `json:"subject"`
	MessageID  string              `json:"message_id"`
	SHA256     string              `json:"sha256"`
	Size       int64               `json:"size"`
	File       string              `json:"file"`
	Folder     string              `json:"folder,omitempty"`
	Recipients []manifestRecipient `json:"recipients"`
	// NotSentTo are those its header (To, Cc) or its submission named who
	// did not get it: a group message's .eml names them all.
	NotSentTo []NotSent        `json:"not_sent_to,omitempty"`
	Fired     []record.RuleHit `json:"rules_fired,omitempty"`
}

// manifestRefusal is a refusal, and the message its submission became
// when the other recipients got it.
type manifestRefusal struct {
	RefusalRecord
	Message string `json:"message,omitempty"`
	Node    string `json:"node,omitempty"`
}

type manifestRecipient struct {
	Address string `json:"address"`
	// Field is where the header names the recipient: "to", "cc", or "bcc"
	// (in neither); empty when the header was not read.
	Field          string            `json:"field,omitempty"`
	Protection     record.Protection `json:"protection"`
	Bcc            bool              `json:"bcc,omitempty"`
	Reason         string            `json:"reason"`
	Consent        *manifestConsent  `json:"consent,omitempty"`
	KeyFingerprint string            `json:"key_fingerprint,omitempty"`
	// SealedPDFSHA256 is the SHA-256 of the PDF a sealed recipient was
	// sent (message.pdf, as attached), SealedPDFSize its size.
	SealedPDFSHA256 string `json:"sealed_pdf_sha256,omitempty"`
	SealedPDFSize   int64  `json:"sealed_pdf_size,omitempty"`
	// HeldUntil is when the sender's office hours opened for a copy
	// accepted outside them; SentNow why one that would have been held
	// went at once ("marker": the subject began with [now]; "no-hold").
	HeldUntil time.Time          `json:"held_until,omitzero"`
	SentNow   string             `json:"sent_now,omitempty"`
	Delivery  []manifestDelivery `json:"delivery"`
}

// manifestConsent is what a decision rested on: a consent (kind "given"),
// or for a sealed recipient the passphrase-set event (date empty,
// recorded set).
type manifestConsent struct {
	ID       int64     `json:"id"`
	Kind     string    `json:"kind,omitempty"`
	Client   string    `json:"client,omitempty"`
	Evidence string    `json:"evidence"`
	Date     string    `json:"date"`
	Expires  string    `json:"expires,omitempty"`
	Domain   string    `json:"domain,omitempty"` // a professional's agreement covering a whole domain
	Recorded time.Time `json:"recorded,omitzero"`
}

type manifestDelivery struct {
	Status EventKind `json:"status"`
	Time   time.Time `json:"time"`
	Reply  string    `json:"reply,omitempty"`
}

// newManifest starts the manifest of an export selected by f.
func newManifest(f Filter, sealPub []byte) manifest {
	m := manifest{Format: 1, ExportedAt: time.Now().UTC(), Refusals: []manifestRefusal{}, Consent: []exportedConsent{}, Messages: []manifestMessage{},
		Evidence: []manifestEvidence{}, Activity: []manifestActivity{}}
	m.Archive.SealKey = strings.TrimSpace(string(sealPub))
	if !f.Since.IsZero() {
		m.Filter.Since = f.Since.Format("2006-01-02")
	}
	if !f.Until.IsZero() {
		m.Filter.Until = f.Until.Format("2006-01-02")
	}
	m.Filter.Clients = f.Clients
	m.Filter.ClientName = f.ClientName
	return m
}

// newManifestMessage is the manifest's entry for a message exported into
// file, with its recipients and no delivery yet; named are the addresses
// its To and Cc fields name.
func newManifestMessage(meta *messageMeta, sum string, size int64, file string, named []NamedAddress) manifestMessage {
	mm := manifestMessage{ID: meta.ID, Time: meta.Time, Direction: meta.Direction, Account: meta.Account, From: meta.From,
		Sender: meta.Sender, Subject: meta.Subject, MessageID: meta.MessageID, SHA256: sum,
		Size: size, File: file, Folder: meta.Folder, Fired: meta.Fired, Recipients: []manifestRecipient{}}
	if meta.Direction == Outbound {
		mm.NotSentTo = notSentTo(named, meta.Decisions, meta.Refused)
	}
	for _, d := range meta.Decisions {
		r := manifestRecipient{Address: d.Address, Field: fieldOf(named, d), Protection: d.Protection, Bcc: d.Bcc, Reason: d.Reason, KeyFingerprint: d.KeyFingerprint,
			SealedPDFSHA256: d.SealedPDFSHA256, SealedPDFSize: d.SealedPDFSize, HeldUntil: d.HeldUntil, SentNow: d.SentNow, Delivery: []manifestDelivery{}}
		if c := d.Consent; c != nil {
			r.Consent = &manifestConsent{ID: c.ID, Kind: c.Kind, Client: c.Client, Evidence: c.Evidence, Date: c.Signed, Expires: c.Expires, Domain: c.Domain}
			if c.Kind == record.PassphraseSet {
				r.Consent.Recorded = c.RecordedAt
			}
		}
		mm.Recipients = append(mm.Recipients, r)
	}
	return mm
}

// exportSeal is a chain's seal key in an export: it signs SHA256SUMS.
type exportSeal struct {
	node   string
	pub    []byte // seal.pub, as the archive folder holds it
	signer *openpgp.Entity
}

// writeExport writes the manifest, the seal keys (raw and as OpenPGP), the
// index page, the checksums of them all and their signature. One chain's
// seal key is seal.pub; several chains' are seal-NODE.pub, all of them in
// seal-key.asc, and SHA256SUMS.asc holds a signature by each.
func writeExport(out string, m *manifest, seals []exportSeal, loc *time.Location) error {
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "manifest.json"), append(mj, '\n'), 0o600); err != nil {
		return err
	}
	if err := writeSealKeys(out, seals); err != nil {
		return err
	}
	if err := writeIndex(out, m, loc); err != nil {
		return err
	}
	if err := writeSums(out); err != nil {
		return err
	}
	var sig bytes.Buffer
	if len(seals) == 1 {
		err = signDetached(&sig, seals[0].signer, filepath.Join(out, "SHA256SUMS"), time.Now())
	} else {
		err = signDetachedBy(&sig, seals, filepath.Join(out, "SHA256SUMS"), time.Now())
	}
	if err != nil {
		return fmt.Errorf("sign SHA256SUMS: %w", err)
	}
	return os.WriteFile(filepath.Join(out, "SHA256SUMS.asc"), sig.Bytes(), 0o600)
}

func writeSealKeys(out string, seals []exportSeal) error {
	var key bytes.Buffer
	if len(seals) == 1 {
		if err := os.WriteFile(filepath.Join(out, "seal.pub"), seals[0].pub, 0o600); err != nil {
			return err
		}
		if err := writeSealKeyArmored(&key, seals[0].signer); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(out, "seal-key.asc"), key.Bytes(), 0o600)
	}
	var signers []*openpgp.Entity
	for _, s := range seals {
		if err := os.WriteFile(filepath.Join(out, "seal-"+s.node+".pub"), s.pub, 0o600); err != nil {
			return err
		}
		signers = append(signers, s.signer)
	}
	if err := writeArmoredKeys(&key, "the seal keys of the archives exported: compare their fingerprints with those the practice published", signers...); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "seal-key.asc"), key.Bytes(), 0o600)
}

// writeSums writes SHA256SUMS over every file in out, in the format
// `sha256sum -c` reads.
func writeSums(out string) error {
	var lines []string
	err := filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(out, p)
		if rel == "SHA256SUMS" || rel == "SHA256SUMS.asc" {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		lines = append(lines, hex.EncodeToString(h.Sum(nil))+"  "+filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(lines)
	return os.WriteFile(filepath.Join(out, "SHA256SUMS"), []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}
