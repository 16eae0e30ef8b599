// Command sealpost is a mail relay for therapy practices: it enforces the
// practice's confidentiality rules on every outgoing message, hands it to the
// provider, and keeps the clinical record. See README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/fsutil"
	"github.com/sealpost/sealpost/internal/textutil"
)

// command is one subcommand ("serve", "consent add"). Files register theirs in init.
type command struct {
	name    string // words after "sealpost", space separated
	args    string // synopsis of arguments and flags for usage lines
	summary string
	run     func(ctx context.Context, c *cli, args []string) error
}

var commands = map[string]*command{}

func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("command registered twice: " + c.name)
	}
	commands[c.name] = c
}

// cli is one invocation: its streams and the configuration path from -c.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	configPath     string
	name           string    // the command being run, for usage messages
	dataDir        string    // the loaded configuration's, for handOverDataDir
	started        time.Time // when the command began
}

// usageError makes the process exit 2: the command line itself was wrong.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit status: 0 success,
// 1 failure (one line on stderr), 2 bad usage.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr}
	cmd, rest := lookup(args)
	if cmd == nil {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			c.printUsage(stdout)
			return 0
		}
		if len(args) == 1 && args[0] == "--version" {
			fmt.Fprintln(stdout, currentBuild())
			return 0
		}
		if len(args) == 0 {
			c.printUsage(stderr)
		} else {
			fmt.Fprintf(stderr, "sealpost: unknown command %q (sealpost help lists them)\n", strings.Join(args, " "))
		}
		return 2
	}
	c.name = cmd.name
	c.started = time.Now()
	err := cmd.run(ctx, c, rest)
	c.handOverDataDir()
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "sealpost %s: %s\nusage: sealpost %s %s\n", cmd.name, ue.msg, cmd.name, cmd.args)
		return 2
	}
	var ces config.Errors
	if errors.As(err, &ces) && len(ces) > 1 {
		fmt.Fprintf(stderr, "sealpost %s: %v\n", cmd.name, err)
		return 1
	}
	fmt.Fprintf(stderr, "sealpost %s: %s\n", cmd.name, textutil.OneLine(err.Error()))
	return 1
}

// lookup finds the longest registered command name that prefixes args.
func lookup(args []string) (*command, []string) {
	for n := min(len(args), 3); n > 0; n-- {
		if c, ok := commands[strings.Join(args[:n], " ")]; ok {
			return c, args[n:]
		}
	}
	return nil, args
}

func (c *cli) printUsage(w io.Writer) {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "usage: sealpost COMMAND [-c FILE] ...")
	fmt.Fprintln(w, "\ncommands:")
	for _, n := range names {
		cmd := commands[n]
		fmt.Fprintf(w, "  %-18s %s\n", n, cmd.summary)
	}
	fmt.Fprintf(w, "\nEvery command takes -c/--config FILE (default $SEALPOST_CONFIG or %s).\n", config.DefaultPath)
}

// flags returns a FlagSet for the current command with -c/--config on it.
func (c *cli) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("sealpost "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	def := os.Getenv("SEALPOST_CONFIG")
	if def == "" {
		def = config.DefaultPath
	}
	c.configPath = def
	fs.StringVar(&c.configPath, "c", def, "configuration file")
	fs.StringVar(&c.configPath, "config", def, "configuration file")
	return fs
}

// parse parses flags that may come before, between or after positional
// arguments ("consent add ADDRESS --evidence TEXT") and returns the positionals.
func (c *cli) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.printFlags(fs)
				return nil, flag.ErrHelp
			}
			return nil, usagef("%v", err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func (c *cli) printFlags(fs *flag.FlagSet) {
	cmd := commands[c.name]
	fmt.Fprintf(c.stdout, "usage: sealpost %s %s\n%s\n\nflags:\n", cmd.name, cmd.args, cmd.summary)
	fs.SetOutput(c.stdout)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// loadConfig reads the configuration named by -c.
func (c *cli) loadConfig() (*config.Config, error) {
	cfg, err := config.Load(c.configPath)
	if err == nil {
		c.dataDir = cfg.DataDir
	}
	return cfg, err
}

// handOverDataDir gives what this command made or changed below data_dir
// as root to data_dir's owner (the service's user), whatever made it: a
// database, its journal, a key, a folder, the archive. An admin's sudo must
// not leave files the service cannot open. Where that fails, the admin is
// told how to run the command instead.
func (c *cli) handOverDataDir() {
	if c.dataDir == "" {
		return
	}
	// A second's slack: the kernel stamps files with a coarse clock.
	if _, err := fsutil.KeepOwnerBelow(c.dataDir, c.started.Add(-time.Second)); err != nil {
		owner, _ := fsutil.ForeignOwner(c.dataDir)
		fmt.Fprintf(c.stderr, "sealpost %s: some files below %s stay root's and the service may not open them (%s); run admin commands as %s: sudo -u %s sealpost %s ...\n",
			c.name, c.dataDir, textutil.OneLine(err.Error()), owner.Name, owner.Name, c.name)
	}
}

// argCount is how many positional arguments a command takes, and what the
// user who gives another number is told.
type argCount struct {
	min, max int // max < 0: no limit
	usage    string
}

var noArgs = argCount{0, 0, "takes no arguments"}

func oneArg(usage string) argCount { return argCount{1, 1, usage} }

// start is how every command that reads the configuration begins: parse
// the command line, check the positional arguments and then the flags
// (checks, usually usage errors), load the configuration.
func (c *cli) start(fs *flag.FlagSet, args []string, want argCount, checks ...func() error) ([]string, *config.Config, error) {
	pos, err := c.parse(fs, args)
	if err != nil {
		return nil, nil, err
	}
	if len(pos) < want.min || (want.max >= 0 && len(pos) > want.max) {
		return nil, nil, usagef("%s", want.usage)
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return nil, nil, err
		}
	}
	cfg, err := c.loadConfig()
	if err != nil {
		return nil, nil, err
	}
	return pos, cfg, nil
}

// printList writes a listing: as indented JSON (nothing as []), or as a
// table under header (tab-separated columns), or empty when there is
// nothing to show.
func printList[T any](c *cli, asJSON bool, list []T, empty, header string, row func(T) string) error {
	if asJSON {
		if list == nil {
			list = []T{}
		}
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	if len(list) == 0 {
		fmt.Fprintln(c.stdout, empty)
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, x := range list {
		fmt.Fprintln(tw, row(x))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
