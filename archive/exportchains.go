package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/sealpost/sealpost/record"
)

// Chain is one relay's archive as a reader was given it: a group
// practice's relays each keep their own (archive.node).
type Chain struct {
	Dir string // the archive folder: seal.pub and the seg-*.log files
	// HeadFile is its head file when it was given apart from the folder
	// ("": HeadFile(Dir), next to it).
	HeadFile string
}

// IsArchiveFolder says whether dir holds an archive (its seal.pub).
func IsArchiveFolder(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "seal.pub"))
	return err == nil
}

// FindChains is the chains in dir: dir itself when it is an archive
// folder, else each folder in it that is one, or that holds one named
// archive (a data_dir's layout: archive/ and archive-head beside it), in
// the order of their names.
func FindChains(dir string) ([]Chain, error) {
	if IsArchiveFolder(dir) {
		return []Chain{{Dir: dir}}, nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	var out []Chain
	for _, e := range ents {
		sub := filepath.Join(dir, e.Name())
		switch {
		case !e.IsDir():
		case IsArchiveFolder(sub):
			out = append(out, Chain{Dir: sub})
		case IsArchiveFolder(filepath.Join(sub, "archive")):
			out = append(out, Chain{Dir: filepath.Join(sub, "archive")})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s is not an archive folder (no seal.pub in it) and holds none: give the folder that holds seal.pub and the seg-*.log files (data_dir/archive on the server), or one that holds such a folder for each node", dir)
	}
	return out, nil
}

// ExportChains is ExportWith over the chains of several relays: each is
// read and checked on its own (its head file, its seal key), and their
// records are merged by time into one export. Messages keep their ids and
// name their node; consent events, which every node copies from the one
// registry they share, are listed once. manifest.json's chains has an
// entry for each chain; SHA256SUMS.asc is signed with every chain's seal
// key. With one chain the export is ExportWith's.
func ExportChains(ctx context.Context, chains []Chain, key openpgp.EntityList, out string, f Filter, o ExportOptions) (*ExportReport, error) {
	if len(chains) == 0 {
		return nil, errors.New("archive: no archive to export")
	}
	for _, c := range chains {
		if err := outsideArchive(c.Dir, out); err != nil {
			return nil, err
		}
	}
	if ents, err := os.ReadDir(out); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("%s is not empty: export into a new folder", out)
	}
	if len(chains) > 1 {
		problems, err := CrossCheck(chains)
		if err != nil {
			return nil, err
		}
		if len(problems) > 0 {
			return nil, fmt.Errorf("archive: %s", problems[0])
		}
	}
	var parts []*chainExport
	for _, c := range chains {
		co := o
		co.HeadFile = c.HeadFile
		p, err := exportChain(ctx, c.Dir, key, out, f, co)
		if err != nil {
			if len(chains) > 1 {
				err = fmt.Errorf("%s: %w", c.Dir, err)
			}
			return nil, err
		}
		parts = append(parts, p)
	}
	m, rep, err := mergeChains(parts)
	if err != nil {
		return nil, err
	}
	loc := o.Location
	if loc == nil {
		loc = time.Local
	}
	var seals []exportSeal
	for _, p := range parts {
		seals = append(seals, exportSeal{node: NodeName(p.node), pub: p.sealPub, signer: p.signer})
	}
	return rep, writeExport(out, m, seals, loc)
}

// CrossCheck finds chains that are one and the same: the same node's name
// twice, or the same seal key (a data_dir copied to a second relay, or one
// archive given twice). What each chain holds is VerifyWith's to check.
func CrossCheck(chains []Chain) ([]string, error) {
	var problems []string
	nodes, keys := map[string]string{}, map[string]string{}
	for _, c := range chains {
		node, err := ChainNode(c.Dir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Dir, err)
		}
		pub, err := readSealPub(c.Dir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Dir, err)
		}
		name := NodeName(node)
		if other, ok := nodes[name]; ok {
			problems = append(problems, fmt.Sprintf("%s and %s both hold the chain of node %s: give each node's archive once", other, c.Dir, name))
		}
		if other, ok := keys[string(pub)]; ok {
			problems = append(problems, fmt.Sprintf("%s and %s were started as one archive (the same seal key): a data_dir copied to a second relay, or one archive given twice", other, c.Dir))
		}
		nodes[name], keys[string(pub)] = c.Dir, c.Dir
	}
	return problems, nil
}

// mergeChains makes one manifest and report of the chains' parts.
func mergeChains(parts []*chainExport) (*manifest, *ExportReport, error) {
	if len(parts) == 1 {
		p := parts[0]
		m := &p.m
		m.Consent = linkEvidence(p.consents, m.Evidence)
		m.Chains = []manifestChain{{Node: NodeName(p.node), manifestArchive: m.Archive}}
		p.setNode(p.node)
		p.rep.Node, p.rep.ConsentEvents = p.node, len(m.Consent)
		return m, p.rep, nil
	}
	m := &manifest{Format: 1, ExportedAt: parts[0].m.ExportedAt, Filter: parts[0].m.Filter, Messages: []manifestMessage{}, Refusals: []manifestRefusal{},
		Evidence: []manifestEvidence{}, Activity: []manifestActivity{}}
	rep := &ExportReport{Verified: true, RecordsChecked: true}
	m.Archive.Verified, m.Archive.RecordsChecked = true, true
	var consents []record.ConsentEvent
	owner := map[string]string{} // message id -> node
	for _, p := range parts {
		name := NodeName(p.node)
		p.setNode(name)
		for _, mm := range p.m.Messages {
			if other, ok := owner[mm.ID]; ok {
				return nil, nil, fmt.Errorf("archive: message %s is in the chains of both %s and %s: one archive given twice, or a data_dir copied to a second relay (sealpost archive verify)", mm.ID, other, name)
			}
			owner[mm.ID] = name
		}
		m.Messages = append(m.Messages, p.m.Messages...)
		m.Refusals = append(m.Refusals, p.m.Refusals...)
		m.Evidence = append(m.Evidence, p.m.Evidence...)
		m.Activity = append(m.Activity, p.m.Activity...)
		consents = append(consents, p.consents...)
		a := p.m.Archive
		m.Chains = append(m.Chains, manifestChain{Node: name, manifestArchive: a})
		m.Archive.Verified = m.Archive.Verified && a.Verified
		m.Archive.RecordsChecked = m.Archive.RecordsChecked && a.RecordsChecked
		m.Archive.RecordsAfterHead += a.RecordsAfterHead
		for _, pr := range a.Problems {
			m.Archive.Problems = append(m.Archive.Problems, "node "+name+": "+pr)
		}
		r := *p.rep
		r.Node = name
		rep.Chains = append(rep.Chains, r)
		rep.Verified = rep.Verified && r.Verified
		rep.RecordsChecked = rep.RecordsChecked && r.RecordsChecked
		rep.RecordsAfterHead += r.RecordsAfterHead
	}
	sort.SliceStable(m.Messages, func(i, j int) bool { return m.Messages[i].Time.Before(m.Messages[j].Time) })
	sort.SliceStable(m.Refusals, func(i, j int) bool { return m.Refusals[i].Time.Before(m.Refusals[j].Time) })
	sort.SliceStable(m.Activity, func(i, j int) bool { return m.Activity[i].Time.Before(m.Activity[j].Time) })
	m.Evidence = firstOfEach(m.Evidence)
	sort.SliceStable(m.Evidence, func(i, j int) bool { return m.Evidence[i].Time.Before(m.Evidence[j].Time) })
	m.Consent = linkEvidence(onceEach(consents), m.Evidence)
	rep.Messages, rep.Refusals, rep.ConsentEvents = len(m.Messages), len(m.Refusals), len(m.Consent)
	rep.Evidence, rep.Activity = len(m.Evidence), len(m.Activity)
	return m, rep, nil
}

// setNode names node in every entry of the chain's part ("" leaves them
// unnamed, as the records of a practice's only relay are).
func (p *chainExport) setNode(node string) {
	for i := range p.m.Messages {
		p.m.Messages[i].Node = node
	}
	for i := range p.m.Refusals {
		p.m.Refusals[i].Node = node
	}
	for i := range p.m.Evidence {
		p.m.Evidence[i].Node = node
	}
	for i := range p.m.Activity {
		p.m.Activity[i].Node = node
	}
}

// firstOfEach keeps the first scan of each id: the same document uploaded
// on two nodes is one file.
func firstOfEach(ev []manifestEvidence) []manifestEvidence {
	seen := map[string]bool{}
	out := ev[:0]
	for _, e := range ev {
		if !seen[e.ID] {
			seen[e.ID] = true
			out = append(out, e)
		}
	}
	return out
}

// onceEach lists each consent event once, in the registry's order: nodes
// sharing one registry each copy every event into their chain.
func onceEach(evs []record.ConsentEvent) []record.ConsentEvent {
	seen := map[string]bool{}
	var out []record.ConsentEvent
	for _, e := range evs {
		b, _ := json.Marshal(e)
		if !seen[string(b)] {
			seen[string(b)] = true
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].RecordedAt.Equal(out[j].RecordedAt) {
			return out[i].RecordedAt.Before(out[j].RecordedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// signDetachedBy writes one armored detached signature block of the file
// at path holding a signature by each chain's seal key.
func signDetachedBy(w io.Writer, seals []exportSeal, path string, now time.Time) error {
	content, err := os.ReadFile(path) // SHA256SUMS: a line per file
	if err != nil {
		return err
	}
	var sigs bytes.Buffer
	for _, s := range seals {
		if err := openpgp.DetachSign(&sigs, s.signer, bytes.NewReader(content), &packet.Config{Time: func() time.Time { return now }}); err != nil {
			return fmt.Errorf("node %s: %w", s.node, err)
		}
	}
	aw, err := armor.Encode(w, openpgp.SignatureType, nil)
	if err != nil {
		return err
	}
	if _, err := aw.Write(sigs.Bytes()); err != nil {
		return err
	}
	if err := aw.Close(); err != nil {
		return err
	}
	_, err = io.WriteString(w, "\n")
	return err
}
