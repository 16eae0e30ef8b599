package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/sealpost/sealpost/archive"
)

// archivesFlag is --archive for the commands that read several relays'
// chains (verify, export): repeatable, each an archive folder or a folder
// holding one for each node.
func archivesFlag(fs *flag.FlagSet) *fileList {
	var dirs fileList
	fs.Var(&dirs, "archive", "an archive folder to read, e.g. an auditor's copy (its head file, archive-head, is looked for next to it), or a folder holding one for each node of a group practice (NODE/ or NODE/archive/): no configuration is read and nothing is written into it; repeatable, one per node")
	return &dirs
}

// startChains is startArchive for the commands that read the chains of
// several relays: each --archive DIR is a chain, or a folder of them
// (archive.FindChains); without --archive, data_dir's own.
func (c *cli) startChains(fs *flag.FlagSet, args []string, dirs *fileList, checks ...func() error) ([]archive.Chain, error) {
	if err := c.parseArchiveArgs(fs, args, checks); err != nil {
		return nil, err
	}
	// No --archive, or one archive folder: read as one chain always was.
	if len(*dirs) == 0 || len(*dirs) == 1 && archive.IsArchiveFolder((*dirs)[0]) {
		dir := ""
		if len(*dirs) == 1 {
			dir = (*dirs)[0]
		}
		src, err := c.archiveSource(fs, dir)
		if err != nil {
			return nil, err
		}
		return []archive.Chain{{Dir: src.dir}}, nil
	}
	if configGiven(fs) {
		return nil, usagef("--archive reads no configuration: give --archive DIR or -c FILE, not both")
	}
	var chains []archive.Chain
	for _, d := range *dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, err
		}
		found, err := archive.FindChains(abs)
		if err != nil {
			return nil, err
		}
		chains = append(chains, found...)
	}
	return chains, nil
}

// configGiven says whether -c or --config was given.
func configGiven(fs *flag.FlagSet) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "c" || f.Name == "config" })
	return given
}

// chainExpect are the chain heads seen earlier that --expect and
// --expect-manifest name, by node ("" for a point that names none: a
// chain of one relay, or an export of one).
type chainExpect map[string][]archive.ChainPoint

// parseExpect reads --expect SEQ:HASH or NODE:SEQ:HASH, and the chain
// heads of --expect-manifest files: an export of several chains names
// each chain's head with its node.
func parseExpect(points, manifests fileList) (chainExpect, error) {
	out := chainExpect{}
	for _, p := range points {
		parts := strings.Split(p, ":")
		node := ""
		if len(parts) == 3 {
			node, parts = parts[0], parts[1:]
		}
		n, err := strconv.ParseUint(parts[0], 10, 64)
		if len(parts) != 2 || err != nil || len(parts[1]) != 64 || !isHex(parts[1]) {
			return nil, usagef("--expect %q is not SEQ:HASH or NODE:SEQ:HASH (a record number and its 64-digit hash, as verify and export print them)", p)
		}
		out[node] = append(out[node], archive.ChainPoint{Seq: n, Hash: strings.ToLower(parts[1])})
	}
	for _, f := range manifests {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var m struct {
			Archive struct {
				Seq  uint64 `json:"chain_head_seq"`
				Head string `json:"chain_head"`
			} `json:"archive"`
			Chains []struct {
				Node string `json:"node"`
				Seq  uint64 `json:"chain_head_seq"`
				Head string `json:"chain_head"`
			} `json:"chains"`
		}
		if err := json.Unmarshal(b, &m); err != nil || (m.Archive.Head == "" && len(m.Chains) == 0) {
			return nil, fmt.Errorf("%s: not an export's manifest.json (no archive.chain_head): %v", f, err)
		}
		if len(m.Chains) < 2 {
			out[""] = append(out[""], archive.ChainPoint{Seq: m.Archive.Seq, Hash: m.Archive.Head})
			continue
		}
		for _, c := range m.Chains {
			out[c.Node] = append(out[c.Node], archive.ChainPoint{Seq: c.Seq, Hash: c.Head})
		}
	}
	return out, nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// forChains hands each chain the points of its node, and refuses points
// that fit none: one that names no node among several chains, or a node
// none of them is.
func (e chainExpect) forChains(nodes []string) ([][]archive.ChainPoint, error) {
	out := make([][]archive.ChainPoint, len(nodes))
	for node, pts := range e {
		found := false
		for i, n := range nodes {
			if node == n || node == "" && len(nodes) == 1 {
				out[i], found = append(out[i], pts...), true
			}
		}
		switch {
		case found:
		case node == "":
			return nil, usagef("with several chains, a chain head seen earlier names its node: --expect NODE:SEQ:HASH, or --expect-manifest of an export of them all")
		default:
			return nil, fmt.Errorf("a chain head seen earlier (--expect, --expect-manifest) is node %s's, and none of the archives given is that node's (they are %s)", node, strings.Join(nodes, ", "))
		}
	}
	return out, nil
}

// chainNames is each chain's node, as its records name it (NodeName).
func chainNames(chains []archive.Chain) ([]string, error) {
	var names []string
	for _, c := range chains {
		n, err := archive.ChainNode(c.Dir)
		if err != nil {
			return nil, err
		}
		names = append(names, archive.NodeName(n))
	}
	return names, nil
}

// verifyChains verifies each chain on its own, its lines prefixed with its
// node, then checks that no two are one and the same. It fails when any
// chain does, naming the node.
func verifyChains(c *cli, chains []archive.Chain, expect chainExpect, o archive.VerifyOptions) error {
	names, err := chainNames(chains)
	if err != nil {
		return err
	}
	points, err := expect.forChains(names)
	if err != nil {
		return err
	}
	var failed []string
	for i, ch := range chains {
		w := &linePrefixer{w: c.stdout, prefix: names[i] + ": "}
		fmt.Fprintf(w, "%s\n", ch.Dir)
		co := o
		co.Expect = points[i]
		rep, err := archive.VerifyWith(ch.Dir, w, co)
		switch {
		case err != nil:
			fmt.Fprintf(w, "FAILED: %v\n", err)
			failed = append(failed, names[i])
		case !rep.EndChecked && !o.NoHead:
			fmt.Fprintf(w, "FAILED: the end of the chain cannot be checked: there is no head file at %s (give --expect NODE:SEQ:HASH or --expect-manifest; with neither, --no-head checks everything but the end)\n", archive.HeadFile(ch.Dir))
			failed = append(failed, names[i])
		default:
			fmt.Fprintf(w, "The chain verifies: %d records, chain head %d:%s.\n", rep.Records, rep.HeadSeq, rep.Head)
			if fp, err := archive.SealKeyFingerprint(ch.Dir); err == nil {
				fmt.Fprintf(w, "Seal key (OpenPGP fingerprint %s): compare it with the one the practice published for this node.\n", fp)
			}
		}
		w.flush()
	}
	problems, err := archive.CrossCheck(chains)
	if err != nil {
		return err
	}
	for _, p := range problems {
		fmt.Fprintf(c.stdout, "FAIL %s\n", p)
	}
	switch {
	case len(failed) > 0:
		return fmt.Errorf("the chain of node %s failed verification (its lines above say why)", strings.Join(failed, ", node "))
	case len(problems) > 0:
		return fmt.Errorf("the archives given are not %d chains of their own: %s", len(chains), problems[0])
	}
	if len(chains) == 1 {
		fmt.Fprintf(c.stdout, "The chain of node %s verifies.\n", names[0])
	} else {
		fmt.Fprintf(c.stdout, "Every chain verifies: %d nodes (%s).\n", len(chains), strings.Join(names, ", "))
	}
	return nil
}

// clientInChains is --client NAME's addresses in the consent history of
// every chain: each node copies the one registry's.
func clientInChains(ctx context.Context, chains []archive.Chain, key openpgp.EntityList, name string) ([]string, error) {
	var addrs []string
	var lastErr error
	for _, ch := range chains {
		found, err := archive.ClientAddresses(ctx, ch.Dir, key, name)
		if err != nil {
			lastErr = err
			continue
		}
		for _, a := range found {
			if !slices.Contains(addrs, a) {
				addrs = append(addrs, a)
			}
		}
	}
	if len(addrs) == 0 {
		return nil, lastErr
	}
	return addrs, nil
}

// printExport says what an export holds and how to check it.
func printExport(w io.Writer, rep *archive.ExportReport, out string, verifyAll bool) {
	if len(rep.Chains) > 1 {
		fmt.Fprintf(w, "Exported %d messages, %d refusals, %d consent events, %d scanned forms and %d console changes of %d nodes to %s, merged by time; each chain's head (keep them: sealpost archive verify --expect-manifest %s/manifest.json checks they are still there):\n",
			rep.Messages, rep.Refusals, rep.ConsentEvents, rep.Evidence, rep.Activity, len(rep.Chains), out, out)
		printChainsExport(w, rep)
	} else {
		fmt.Fprintf(w, "Exported %d messages, %d refusals, %d consent events, %d scanned forms and %d console changes to %s (chain head %d:%s; keep it: sealpost archive verify --expect checks it is still there).\n",
			rep.Messages, rep.Refusals, rep.ConsentEvents, rep.Evidence, rep.Activity, out, rep.HeadSeq, rep.Head)
	}
	switch {
	case verifyAll && !rep.Verified, !verifyAll && !rep.RecordsChecked:
		fmt.Fprintf(w, "WARNING: the archive did not verify; the problems are listed in %s/manifest.json.\n", out)
	case !verifyAll:
		fmt.Fprintln(w, "The records exported and the chain's end were checked; the rest of the archive was not read (sealpost archive verify, or export with --verify, checks the whole chain).")
	}
	if rep.RecordsAfterHead > 0 {
		fmt.Fprintf(w, "%d records written while the export ran (after the chain head it verified) are not in it; the next export holds them.\n", rep.RecordsAfterHead)
	}
	if len(rep.Chains) > 1 {
		fmt.Fprintf(w, "SHA256SUMS is signed with each node's seal key (all in seal-key.asc; fingerprints above). Check it with:\n")
	} else {
		fmt.Fprintf(w, "SHA256SUMS is signed with the archive's seal key, OpenPGP fingerprint %s (seal-key.asc). Check it with:\n", rep.SealKeyFingerprint)
	}
	fmt.Fprintf(w, "  cd %s && gpg --import seal-key.asc && gpg --verify SHA256SUMS.asc SHA256SUMS && sha256sum -c SHA256SUMS\n", out)
}

// printChainsExport says what each chain gave an export of several.
func printChainsExport(w io.Writer, rep *archive.ExportReport) {
	for _, r := range rep.Chains {
		fmt.Fprintf(w, "  node %s: %d messages, chain head %d:%s, seal key %s\n", r.Node, r.Messages, r.HeadSeq, r.Head, r.SealKeyFingerprint)
	}
}

// linePrefixer writes each line with prefix before it.
type linePrefixer struct {
	w      io.Writer
	prefix string
	buf    bytes.Buffer
}

func (p *linePrefixer) Write(b []byte) (int, error) {
	p.buf.Write(b)
	for {
		i := bytes.IndexByte(p.buf.Bytes(), '\n')
		if i < 0 {
			return len(b), nil
		}
		if _, err := fmt.Fprintf(p.w, "%s%s", p.prefix, p.buf.Next(i+1)); err != nil {
			return len(b), err
		}
	}
}

func (p *linePrefixer) flush() {
	if p.buf.Len() > 0 {
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf.Bytes())
		p.buf.Reset()
	}
}
