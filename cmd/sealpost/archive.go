package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"golang.org/x/term"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/relay/queue"
)

func init() {
	register(&command{name: "archive verify", args: "[--archive DIR ...] [--head FILE | --no-head] [--allow-torn-tail] [--expect [NODE:]SEQ:HASH ...] [--expect-manifest FILE ...] | --s3 [--node NAME]",
		summary: "check the archive's hash chain, seals and end (needs no private key); with several nodes' archives, each chain on its own; --s3: the copy in the bucket of [archive.s3]", run: runArchiveVerify})
	register(&command{name: "archive export", args: "--key FILE [--key FILE ...] --out DIR [--archive DIR ... | --s3 [--node NAME]] [--head FILE] [--since YYYY-MM-DD] [--until YYYY-MM-DD] [--client ADDRESS|NAME] [--timezone ZONE] [--verify] [--passphrase-file FILE ...]",
		summary: "decrypt records into a folder an auditor can check and read", run: runArchiveExport})
	register(&command{name: "archive reindex", args: "[--archive DIR]",
		summary: "build the archive's index (archive-index.db, next to it) again from the segments, while the relay is stopped", run: runArchiveReindex})
	register(&command{name: "archive seal-key", args: "[--archive DIR]",
		summary: "print the archive's seal key as OpenPGP, with the fingerprint to publish (exports are signed with it)", run: runArchiveSealKey})
	register(&command{name: "archive prune", args: "[--dry-run]", summary: "remove whole segments past archive.retention that no hold covers", run: runArchivePrune})
	register(&command{name: "archive hold", args: "--client ADDRESS|NAME | --since YYYY-MM-DD --until YYYY-MM-DD [--reason TEXT] | --list",
		summary: "keep records from pruning (legal hold)", run: runArchiveHold})
	register(&command{name: "archive release", args: "HOLD-ID", summary: "lift a legal hold", run: runArchiveRelease})
}

// archiveSource is the archive a reading command works on: an auditor's
// copy given with --archive (no configuration is read, and nothing is
// written into it), or the configuration's data_dir/archive.
type archiveSource struct {
	dir string
	cfg *config.Config // nil with --archive
}

// archiveFlag is --archive, for the commands that only read the archive.
func archiveFlag(fs *flag.FlagSet) *string {
	return fs.String("archive", "", "the archive folder to read, e.g. an auditor's copy (its head file, archive-head, is looked for next to it): no configuration is read and nothing is written into it")
}

// startArchive begins a command that only reads the archive: like start,
// but with --archive DIR it reads no configuration (an auditor has none:
// a configuration with only data_dir is refused for its missing accounts
// and notice).
func (c *cli) startArchive(fs *flag.FlagSet, args []string, dir *string, checks ...func() error) (*archiveSource, error) {
	if err := c.parseArchiveArgs(fs, args, checks); err != nil {
		return nil, err
	}
	return c.archiveSource(fs, *dir)
}

// parseArchiveArgs parses a reading command's flags, which take no
// arguments, and runs the command's checks of them.
func (c *cli) parseArchiveArgs(fs *flag.FlagSet, args []string, checks []func() error) error {
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("takes no arguments")
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// archiveSource is the archive folder dir ("": the configuration's).
func (c *cli) archiveSource(fs *flag.FlagSet, dir string) (*archiveSource, error) {
	if dir == "" {
		cfg, err := c.loadConfig()
		if err != nil {
			return nil, fmt.Errorf("%w (on a copy of the archive no configuration is needed: give --archive DIR, the folder that holds seal.pub and the seg-*.log files)", err)
		}
		return &archiveSource{dir: cfg.ArchiveDir(), cfg: cfg}, nil
	}
	if configGiven(fs) {
		return nil, usagef("--archive reads no configuration: give --archive DIR or -c FILE, not both")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(abs, "seal.pub")); err != nil {
		return nil, fmt.Errorf("%s is not an archive folder (no seal.pub in it): give the folder that holds seal.pub and the seg-*.log files (data_dir/archive on the server)", dir)
	}
	return &archiveSource{dir: abs}, nil
}

func runArchiveVerify(ctx context.Context, c *cli, args []string) error {
	if wantsS3(args) {
		return runArchiveVerifyS3(ctx, c, args)
	}
	fs := c.flags()
	var points, manifests fileList
	fs.Var(&points, "expect", "a chain head seen earlier, SEQ:HASH (as verify and export print it), NODE:SEQ:HASH with several nodes' chains: it must still be in the chain, unchanged (repeatable)")
	fs.Var(&manifests, "expect-manifest", "an earlier export's manifest.json: its chain head must still be in the chain, unchanged (repeatable)")
	head := fs.String("head", "", "the archive's head file, when it was given apart from the archive (default: archive-head next to the archive folder)")
	noHead := fs.Bool("no-head", false, "there is no head file (a copy of the archive folder alone): check everything but the end, which cannot be checked")
	allowTorn := fs.Bool("allow-torn-tail", false, "accept bytes after the newest record that are not a whole record (what a crash in the middle of a write leaves)")
	dirs := archivesFlag(fs)
	var expected chainExpect
	chains, err := c.startChains(fs, args, dirs, func() error {
		if *head != "" && *noHead {
			return usagef("--head and --no-head exclude each other")
		}
		var err error
		expected, err = parseExpect(points, manifests)
		return err
	})
	if err != nil {
		return err
	}
	o := archive.VerifyOptions{HeadFile: *head, NoHead: *noHead, AllowTornTail: *allowTorn}
	if len(chains) > 1 {
		if *head != "" {
			return usagef("--head names one archive's head file: with several nodes' archives, each head file is looked for next to its folder")
		}
		return verifyChains(c, chains, expected, o)
	}
	dir := chains[0].Dir
	names, err := chainNames(chains)
	if err != nil {
		return err
	}
	points1, err := expected.forChains(names)
	if err != nil {
		return err
	}
	expect := points1[0]
	o.Expect = expect
	rep, err := archive.VerifyWith(dir, c.stdout, o)
	if err != nil {
		return err
	}
	// Without a head file or a chain head seen earlier, records cut off
	// the end leave an archive that verifies: that is not a pass unless
	// the auditor says there is nothing to compare with.
	if !rep.EndChecked && !*noHead {
		return fmt.Errorf("the end of the archive cannot be checked: there is no head file at %s. Records cut off the end would not show. Give the head file (--head FILE) or a chain head seen earlier (--expect, --expect-manifest); with neither, --no-head checks everything but the end",
			archive.HeadFile(dir))
	}
	if rep.EndChecked {
		fmt.Fprintf(c.stdout, "The archive verifies: %d records, chain head %d:%s.\n", rep.Records, rep.HeadSeq, rep.Head)
	} else {
		fmt.Fprintf(c.stdout, "The archive verifies as far as the folder alone can show: %d records, chain head %d:%s; records cut off its end would not show.\n", rep.Records, rep.HeadSeq, rep.Head)
	}
	if len(expect) > 0 {
		fmt.Fprintf(c.stdout, "The %d chain head(s) seen earlier are in it, unchanged.\n", len(expect))
	}
	if fp, err := archive.SealKeyFingerprint(dir); err == nil {
		fmt.Fprintf(c.stdout, "Seal key (seal.pub; OpenPGP fingerprint %s): compare it with the one the practice published.\n", fp)
	}
	return nil
}

// runArchiveSealKey prints the seal key's OpenPGP form: the practice
// publishes its fingerprint once, and auditors check exports against it.
func runArchiveSealKey(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	dirFlag := archiveFlag(fs)
	src, err := c.startArchive(fs, args, dirFlag)
	if err != nil {
		return err
	}
	key, fp, err := archive.SealKeyOpenPGP(src.dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "The archive's seal key, OpenPGP fingerprint %s.\nPublish this fingerprint where auditors find it apart from any export (the practice's letterhead, its records policy): every export's SHA256SUMS.asc is signed with this key.\n", fp)
	_, err = c.stdout.Write(key)
	return err
}

func parseDate(flagName, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.ParseInLocation("2006-01-02", s, time.Local)
	if err != nil {
		return t, usagef("--%s %q is not YYYY-MM-DD", flagName, s)
	}
	return t, nil
}

// clientAddresses turns --client into addresses: an address as it is, or a
// client's name or chart id looked up in the consent registry.
func clientAddresses(ctx context.Context, cfg *config.Config, client string) ([]string, error) {
	if client == "" {
		return nil, nil
	}
	if strings.Contains(client, "@") {
		return []string{client}, nil
	}
	reg, err := openRegistryStore(cfg)
	if err != nil {
		return nil, err
	}
	defer reg.Close()
	addrs, err := reg.ClientAddresses(ctx, client)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("no client %q in the consent registry; give an address instead", client)
	}
	return addrs, nil
}

func runArchiveExport(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	var keyFile fileList
	fs.Var(&keyFile, "key", "the archive's private key (required; once per key after a change of archive key)")
	out := fs.String("out", "", "a new folder for the export (required)")
	since := fs.String("since", "", "first day, YYYY-MM-DD")
	until := fs.String("until", "", "last day, YYYY-MM-DD (inclusive)")
	client := fs.String("client", "", "only this client: an address, or a name or chart id from the consent history the archive holds")
	head := fs.String("head", "", "the archive's head file, when it was given apart from the archive (default: archive-head next to the archive folder)")
	zone := fs.String("timezone", "", "the time zone index.html shows times in, e.g. Europe/Berlin (default: this computer's); manifest.json has UTC")
	verifyAll := fs.Bool("verify", false, "verify the whole archive first, as archive verify does, and find the records by reading every segment rather than through the index (the manifest's \"verified\"); without it only the records exported and the chain's end are checked")
	dirs := archivesFlag(fs)
	var ppFiles fileList
	fs.Var(&ppFiles, "passphrase-file", "a file holding a private key's passphrase (once per passphrase when the keys have different ones; otherwise asked on the terminal)")
	fs.Bool("s3", false, "export from the copy in the S3 bucket [archive.s3] names: every node's chain (or --node's) is downloaded into a temporary folder, checked, exported and removed (-c names a configuration with [archive.s3]; an auditor's may hold nothing else)")
	node := fs.String("node", "", "with --s3: only this node's chain (default: every node in the bucket)")
	var f archive.Filter
	var loc *time.Location
	checks := func() error {
		if len(keyFile) == 0 || *out == "" {
			return usagef("--key and --out are required")
		}
		if wantsS3(args) && *head != "" {
			return usagef("--s3 exports the bucket's copy with the head file it holds: give --s3 or --head, not both")
		}
		var err error
		if f.Since, err = parseDate("since", *since); err != nil {
			return err
		}
		if f.Until, err = parseDate("until", *until); err != nil {
			return err
		}
		if !f.Until.IsZero() {
			f.Until = f.Until.AddDate(0, 0, 1)
		}
		if *zone != "" {
			if loc, err = time.LoadLocation(*zone); err != nil {
				return usagef("--timezone %q is not a time zone this computer knows (names like Europe/Berlin or America/New_York)", *zone)
			}
		}
		return nil
	}
	var chains []archive.Chain
	var err error
	if wantsS3(args) {
		var done func()
		if chains, done, err = c.startBucketChains(ctx, fs, args, dirs, node, checks); err != nil {
			return err
		}
		defer done()
	} else if chains, err = c.startChains(fs, args, dirs, checks); err != nil {
		return err
	}
	key, err := loadArchiveKeys(c, keyFile, ppFiles)
	if err != nil {
		return err
	}
	// A name is looked up in the archive's own consent history: an
	// auditor's copy has no registry, and opening one would create it.
	switch {
	case *client == "":
	case strings.Contains(*client, "@"):
		f.Clients = []string{*client}
	default:
		if f.Clients, err = clientInChains(ctx, chains, key, *client); err != nil {
			return err
		}
		f.ClientName = *client
	}
	if len(chains) > 1 && *head != "" {
		return usagef("--head names one archive's head file: with several nodes' archives, each head file is looked for next to its folder")
	}
	chains[0].HeadFile = *head
	rep, err := archive.ExportChains(ctx, chains, key, *out, f, archive.ExportOptions{Location: loc, VerifyAll: *verifyAll})
	if err != nil {
		return err
	}
	printExport(c.stdout, rep, *out, *verifyAll)
	return nil
}

// withArchive runs f against the running relay's archive (through the
// control socket) or, when no relay runs, against the archive opened here.
func withArchive(ctx context.Context, cfg *config.Config, remote func(*queue.Control) error, local func(*archive.Archive) error) error {
	if ctl, err := queue.DialControl(cfg.ControlPath()); err == nil {
		return remote(ctl)
	}
	a, _, err := openArchive(ctx, cfg, nil)
	if err != nil {
		return err
	}
	defer a.Close()
	return local(a)
}

// openArchive opens the archive for writing, its key made on first use; the
// warning is what EnsureKey had to say about the key. A nil log keeps the
// archive's own messages unlogged.
func openArchive(ctx context.Context, cfg *config.Config, log *slog.Logger) (a *archive.Archive, warning string, err error) {
	pub, warning, err := archive.EnsureKey(cfg.DataDir, cfg.Archive.PublicKey)
	if err != nil {
		return nil, "", err
	}
	a, err = archive.Open(archive.Options{Dir: cfg.ArchiveDir(), PublicKey: pub, Node: cfg.Archive.Node, Logger: log, Context: ctx,
		SegmentBytes: testSegmentBytes, SealEvery: offsiteSealEvery(cfg), MayRemove: offsiteMayRemove(cfg)})
	return a, warning, err
}

func runArchiveReindex(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	dirFlag := archiveFlag(fs)
	src, err := c.startArchive(fs, args, dirFlag)
	if err != nil {
		return err
	}
	start := time.Now()
	n, err := archive.Reindex(ctx, src.dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Indexed %d records in %s (%s).\n", n, archive.IndexFile(src.dir), time.Since(start).Round(time.Millisecond))
	return nil
}

func printPrune(c *cli, rep *archive.PruneReport, dry bool) {
	verb := "Removed"
	if dry {
		verb = "Would remove"
	}
	if len(rep.Removed) == 0 {
		fmt.Fprintln(c.stdout, "Nothing to prune.")
	} else {
		fmt.Fprintf(c.stdout, "%s %d segment(s): %s\n", verb, len(rep.Removed), strings.Join(rep.Removed, ", "))
	}
	if rep.Kept != "" {
		fmt.Fprintf(c.stdout, "Kept from %s.\n", rep.Kept)
	}
}

func runArchivePrune(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	dry := fs.Bool("dry-run", false, "say what would be removed, remove nothing")
	_, cfg, err := c.start(fs, args, noArgs)
	if err != nil {
		return err
	}
	var rep archive.PruneReport
	err = withArchive(ctx, cfg, func(ctl *queue.Control) error {
		q := url.Values{}
		if *dry {
			q.Set("dry_run", "1")
		}
		return ctl.Call("POST", "/archive/prune?"+q.Encode(), &rep)
	}, func(a *archive.Archive) error {
		r, err := a.Prune(ctx, cfg.Archive.Retention.D(), *dry)
		if r != nil {
			rep = *r
		}
		return err
	})
	if err != nil {
		return err
	}
	printPrune(c, &rep, *dry)
	return nil
}

func runArchiveHold(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	client := fs.String("client", "", "an address, or a name or chart id from the consent registry")
	since := fs.String("since", "", "first day of a date range, YYYY-MM-DD")
	until := fs.String("until", "", "last day of a date range, YYYY-MM-DD")
	reason := fs.String("reason", "", "why (kept encrypted in the archive)")
	list := fs.Bool("list", false, "show the active holds")
	_, cfg, err := c.start(fs, args, noArgs)
	if err != nil {
		return err
	}
	if *list {
		holds, err := archive.ListHolds(cfg.ArchiveDir())
		if err != nil {
			return err
		}
		return printList(c, false, holds, "No active holds.", "ID\tSET\tSINCE\tUNTIL\tCLIENT ADDRESSES", func(h archive.HoldInfo) string {
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%d", h.ID, h.Set.Local().Format(time.DateTime), orDash(h.Since), orDash(h.Until), h.Clients)
		})
	}
	if *client == "" && *since == "" && *until == "" {
		return usagef("give --client, or --since and/or --until")
	}
	for name, d := range map[string]string{"since": *since, "until": *until} {
		if _, err := parseDate(name, d); err != nil {
			return err
		}
	}
	addrs, err := clientAddresses(ctx, cfg, *client)
	if err != nil {
		return err
	}
	var id string
	err = withArchive(ctx, cfg, func(ctl *queue.Control) error {
		body := holdRequest{Clients: addrs, Since: *since, Until: *until, Reason: *reason}
		var resp struct{ ID string }
		b, _ := json.Marshal(body)
		if err := ctl.Call("POST", "/archive/hold?req="+url.QueryEscape(string(b)), &resp); err != nil {
			return err
		}
		id = resp.ID
		return nil
	}, func(a *archive.Archive) error {
		var err error
		id, err = a.Hold(ctx, addrs, *since, *until, *reason)
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Hold %s set: the records it covers are kept until it is released (sealpost archive release %s).\n", id, id)
	return nil
}

func runArchiveRelease(ctx context.Context, c *cli, args []string) error {
	pos, cfg, err := c.start(c.flags(), args, oneArg("needs one HOLD-ID (see sealpost archive hold --list)"))
	if err != nil {
		return err
	}
	err = withArchive(ctx, cfg, func(ctl *queue.Control) error {
		return ctl.Call("POST", "/archive/release?id="+url.QueryEscape(pos[0]), nil)
	}, func(a *archive.Archive) error { return a.Release(ctx, pos[0]) })
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Released %s.\n", pos[0])
	return nil
}

type holdRequest struct {
	Clients []string `json:"clients"`
	Since   string   `json:"since"`
	Until   string   `json:"until"`
	Reason  string   `json:"reason"`
}

// archiveHandlers let the CLI prune, hold and release through the running
// relay, which holds the archive's write lock.
func archiveHandlers(a *archive.Archive, cfg *config.Config) map[string]http.HandlerFunc {
	fail := func(w http.ResponseWriter, err error) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
	}
	ok := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}
	return map[string]http.HandlerFunc{
		"POST /archive/prune": func(w http.ResponseWriter, r *http.Request) {
			rep, err := a.Prune(r.Context(), cfg.Archive.Retention.D(), r.URL.Query().Get("dry_run") == "1")
			if err != nil {
				fail(w, err)
				return
			}
			ok(w, rep)
		},
		"POST /archive/hold": func(w http.ResponseWriter, r *http.Request) {
			var req holdRequest
			if err := json.Unmarshal([]byte(r.URL.Query().Get("req")), &req); err != nil {
				fail(w, err)
				return
			}
			id, err := a.Hold(r.Context(), req.Clients, req.Since, req.Until, req.Reason)
			if err != nil {
				fail(w, err)
				return
			}
			ok(w, map[string]string{"id": id})
		},
		"POST /archive/release": func(w http.ResponseWriter, r *http.Request) {
			if err := a.Release(r.Context(), r.URL.Query().Get("id")); err != nil {
				fail(w, err)
				return
			}
			ok(w, map[string]string{})
		},
	}
}

// fileList is a flag given once per file: --key once per archive private
// key (after a change of archive key, the records are under more than one),
// --passphrase-file once per passphrase.
type fileList []string

func (k *fileList) String() string     { return strings.Join(*k, ",") }
func (k *fileList) Set(v string) error { *k = append(*k, v); return nil }

// loadArchiveKeys reads every --key file. A protected key is opened with
// the first --passphrase-file that fits it (each key may have its own), or
// with a passphrase asked on the terminal.
func loadArchiveKeys(c *cli, files, ppFiles fileList) (openpgp.EntityList, error) {
	var keys openpgp.EntityList
	for _, f := range files {
		k, err := archive.LoadPrivateKey(f, archivePassphrases(c, f, ppFiles))
		if err != nil {
			return nil, err
		}
		keys = append(keys, k...)
	}
	return keys, nil
}

// archivePassphrases gives the passphrases to try on a protected archive
// key: the --passphrase-file contents, or one asked on the terminal.
func archivePassphrases(c *cli, keyFile string, ppFiles fileList) func() ([][]byte, error) {
	return func() ([][]byte, error) {
		if len(ppFiles) > 0 {
			var pps [][]byte
			for _, f := range ppFiles {
				pp, err := os.ReadFile(f)
				if err != nil {
					return nil, err
				}
				pps = append(pps, pp)
			}
			return pps, nil
		}
		fd := int(os.Stdin.Fd())
		if !term.IsTerminal(fd) {
			return nil, errors.New("the archive key is protected by a passphrase: give --passphrase-file, or run on a terminal")
		}
		fmt.Fprintf(c.stderr, "Passphrase for the archive key %s: ", keyFile)
		pp, err := term.ReadPassword(fd)
		fmt.Fprintln(c.stderr)
		return [][]byte{pp}, err
	}
}
