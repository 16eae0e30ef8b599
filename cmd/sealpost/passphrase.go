package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/fsutil"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules"
	"github.com/sealpost/sealpost/rules/sealed"
)

func init() {
	register(&command{name: "consent passphrase", args: "ADDRESS|NAME [--generate] [--card FILE.pdf] [--remove] [--name TEXT] [--by WHO]",
		summary: "record the passphrase a client opens sealed PDFs with (asked on the terminal, or one line on stdin)", run: runConsentPassphrase})
}

// maxPassphraseLine bounds what is read from stdin: sealed.CheckPassphrase
// refuses anything over 127 bytes anyway, with its own reason.
const maxPassphraseLine = 1024

func runConsentPassphrase(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	generate := fs.Bool("generate", false, "make a passphrase of six words and print it, once")
	card := fs.String("card", "", "also write the client's printable passphrase card (a PDF, not encrypted) to this file")
	remove := fs.Bool("remove", false, "withdraw the client's passphrase: no more sealed PDFs for them")
	name := fs.String("name", "", "with an ADDRESS: the client's name or chart id (default: the one on file)")
	by := fs.String("by", "", "who records this (default: the user running the command)")
	pos, cfg, err := c.start(fs, args, oneArg("needs one ADDRESS or a client's NAME"), func() error {
		if *remove && (*generate || *card != "") {
			return usagef("--remove takes neither --generate nor --card")
		}
		return nil
	})
	if err != nil {
		return err
	}
	if *name != "" && !strings.Contains(pos[0], "@") {
		return usagef("--name goes with an ADDRESS; %q already names the client", pos[0])
	}
	keepSecretsOutOfDumps()
	return withRegistry(cfg, func(reg *rules.Registry) error {
		client, err := passphraseClient(ctx, reg, pos[0], *name)
		if err != nil {
			return err
		}
		if *remove {
			return removePassphrase(ctx, c, cfg, reg, client, recorder(*by))
		}
		secret, err := c.newPassphrase(*generate, client)
		if err != nil {
			return err
		}
		var cardFile *pendingFile
		if *card != "" {
			cardFile, err = writeCard(*card, sealed.CardOptions{PracticeName: cfg.Sealed.PracticeName, Client: client.name,
				Passphrase: secret, Crisis: cfg.Sealed.Crisis})
			if err != nil {
				return err
			}
			defer cardFile.discard()
		}
		ev, err := reg.SetPassphrase(ctx, client.addresses, client.name, secret, recorder(*by))
		if err != nil {
			return err
		}
		noteCommand(ctx, cfg, c.stderr, commandChange{what: "passphrase-set", object: strconv.FormatInt(ev.ID, 10), addresses: ev.Addresses, by: ev.RecordedBy})
		if cardFile != nil {
			if err := cardFile.commit(); err != nil {
				return fmt.Errorf("the passphrase is set (#%d), but the card could not be put in place: %w; run the command again with --card", ev.ID, err)
			}
		}
		if *generate {
			fmt.Fprintf(c.stdout, "Passphrase: %s\n", secret)
			if cardFile != nil {
				fmt.Fprintln(c.stdout, "It will not be shown again; it is on the card.")
			} else {
				fmt.Fprintln(c.stdout, "It will not be shown again: give it to the client now.")
			}
		}
		verb := "set"
		if client.had != nil {
			verb = "replaced"
		}
		fmt.Fprintf(c.stdout, "Passphrase %s (#%d) for %s by %s: messages to them go as a sealed PDF from the next message on.\n",
			verb, ev.ID, strings.Join(ev.Addresses, ", "), ev.RecordedBy)
		if client.had != nil {
			fmt.Fprintln(c.stdout, "Copies still queued that were sealed with the old passphrase are not sent; their senders are told.")
		}
		if cardFile != nil {
			fmt.Fprintf(c.stdout, "Card written to %s: it shows the passphrase in clear; print it for the client, then delete the file.\n", *card)
		}
		if client.prefersClear != nil {
			fmt.Fprintf(c.stdout, "Note: the client asked for clear email (consent #%d, --prefer clear): they get email in clear until that consent is revoked or given again without it.\n", client.prefersClear.ID)
		}
		return nil
	})
}

// passphraseTarget is the client a passphrase command is about.
type passphraseTarget struct {
	addresses []string
	name      string
	// had is the passphrase-set event on file before this command, if any.
	had *record.ConsentEvent
	// prefersClear is the client's active consent when it asks for clear
	// email although a passphrase is on file.
	prefersClear *record.ConsentEvent
}

func (t passphraseTarget) display() string {
	if t.name != "" {
		return t.name
	}
	return strings.Join(t.addresses, ", ")
}

// passphraseClient resolves ADDRESS|NAME as `archive export --client` does:
// a name or chart id stands for every address the registry has for it.
func passphraseClient(ctx context.Context, reg *rules.Registry, arg, name string) (passphraseTarget, error) {
	t := passphraseTarget{name: name}
	if strings.Contains(arg, "@") {
		t.addresses = []string{arg}
	} else {
		addrs, err := reg.ClientAddresses(ctx, arg)
		if err != nil {
			return t, err
		}
		if len(addrs) == 0 {
			return t, fmt.Errorf("no client %q in the consent registry; give an address (and --name)", arg)
		}
		t.addresses, t.name = addrs, arg
	}
	for _, a := range t.addresses {
		st, err := reg.Current(ctx, a, time.Now())
		if err != nil {
			return t, err
		}
		if t.name == "" {
			t.name = clientName(st)
		}
		if st.Passphrase != nil && t.had == nil {
			t.had = st.Passphrase
		}
		if st.State == rules.ConsentActive && st.Given.Prefer == record.PreferClear && t.prefersClear == nil {
			t.prefersClear = st.Given
		}
	}
	return t, nil
}

// clientName is the name or chart id the registry last recorded for an address.
func clientName(st rules.ConsentStatus) string {
	for _, ev := range []*record.ConsentEvent{st.Passphrase, st.Given, st.Revoked} {
		if ev != nil && ev.Client != "" {
			return ev.Client
		}
	}
	return ""
}

func removePassphrase(ctx context.Context, c *cli, cfg *config.Config, reg *rules.Registry, t passphraseTarget, by string) error {
	ev, err := reg.RemovePassphrase(ctx, t.addresses, by)
	if err != nil {
		return err
	}
	noteCommand(ctx, cfg, c.stderr, commandChange{what: "passphrase-removed", object: strconv.FormatInt(ev.ID, 10), addresses: ev.Addresses, by: by})
	then := "messages to them are refused unless they have a usable key or consent to clear email"
	if st, err := reg.Current(ctx, t.addresses[0], time.Now()); err == nil && st.State == rules.ConsentActive {
		then = fmt.Sprintf("they get email in clear (consent #%d) unless they have a usable key", st.Given.ID)
	}
	fmt.Fprintf(c.stdout, "Passphrase removed (#%d) for %s by %s: no more sealed PDFs; %s. Copies still queued are not sent; their senders are told.\n",
		ev.ID, strings.Join(ev.Addresses, ", "), ev.RecordedBy, then)
	return nil
}

// newPassphrase makes one (--generate), or reads one from the terminal
// (twice, without echo) or from stdin (one line), and prepares it as the
// PDF's security handler will compare it.
func (c *cli) newPassphrase(generate bool, t passphraseTarget) (string, error) {
	if generate {
		p, err := sealed.GeneratePassphrase()
		if err != nil {
			return "", fmt.Errorf("make a passphrase: %w", err)
		}
		return p, nil
	}
	var typed string
	var err error
	if f, ok := c.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		typed, err = c.askPassphrase(int(f.Fd()), t.display())
	} else {
		typed, err = readPassphraseLine(c.stdin)
	}
	if err != nil {
		return "", err
	}
	prepared, err := sealed.CheckPassphrase(typed)
	if err != nil {
		return "", fmt.Errorf("%w; nothing was changed", err)
	}
	return prepared, nil
}

func (c *cli) askPassphrase(fd int, who string) (string, error) {
	fmt.Fprintf(c.stderr, "Passphrase for %s (at least 12 characters; six words are easiest to type): ", who)
	first, err := term.ReadPassword(fd)
	fmt.Fprintln(c.stderr)
	if err != nil {
		return "", fmt.Errorf("read the passphrase: %w", err)
	}
	fmt.Fprint(c.stderr, "The same passphrase again: ")
	second, err := term.ReadPassword(fd)
	fmt.Fprintln(c.stderr)
	if err != nil {
		return "", fmt.Errorf("read the passphrase: %w", err)
	}
	if string(first) != string(second) {
		return "", errors.New("the two passphrases differ; nothing was changed")
	}
	return string(first), nil
}

// readPassphraseLine reads the first line of stdin: a script pipes the
// passphrase in, or an admin types it where no terminal can hide it.
func readPassphraseLine(r io.Reader) (string, error) {
	line, err := bufio.NewReaderSize(io.LimitReader(r, maxPassphraseLine+1), maxPassphraseLine+1).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read the passphrase from stdin: %w", err)
	}
	if len(line) > maxPassphraseLine {
		return "", fmt.Errorf("the passphrase on stdin is longer than %d bytes; nothing was changed", maxPassphraseLine)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", errors.New("no passphrase on stdin: type it on a terminal, pipe it in as one line, or use --generate")
	}
	return line, nil
}

// pendingFile is a file written beside its final name and put in place
// only once the registry holds the passphrase it shows.
type pendingFile struct{ tmp, path string }

func writeCard(path string, o sealed.CardOptions) (*pendingFile, error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".sealpost-card-*.pdf")
	if err != nil {
		return nil, fmt.Errorf("card: %w", err)
	}
	p := &pendingFile{tmp: f.Name(), path: path}
	err = sealed.Card(f, o)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		p.discard()
		return nil, fmt.Errorf("card: %w", err)
	}
	fsutil.KeepOwner(p.tmp, filepath.Dir(path))
	return p, nil
}

func (p *pendingFile) commit() error {
	if err := os.Rename(p.tmp, p.path); err != nil {
		return err
	}
	p.tmp = ""
	return nil
}

func (p *pendingFile) discard() {
	if p.tmp != "" {
		os.Remove(p.tmp)
	}
}

// keepSecretsOutOfDumps: the passphrase is in this process's memory, which
// must not end up in a core file or be readable by other processes of the
// same user.
func keepSecretsOutOfDumps() {
	syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{})
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
}

// keepDataDirOwner gives the registry's files data_dir's owner (fsutil.KeepOwner).
func keepDataDirOwner(cfg *config.Config) {
	reg := cfg.RegistryPath()
	for _, p := range []string{reg, reg + "-wal", reg + "-shm", passphraseKeyPath(cfg)} {
		fsutil.KeepOwner(p, cfg.DataDir)
	}
}

func passphraseKeyPath(cfg *config.Config) string {
	return filepath.Join(filepath.Dir(cfg.RegistryPath()), "passphrase.key")
}
