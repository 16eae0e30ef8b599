package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/oauth"
	"github.com/sealpost/sealpost/rules"
)

// defaultConfigPath is where packaged installs keep the configuration.
const defaultConfigPath = "/etc/sealpost/sealpost.toml"

// Config is sealpost.toml. Keys and defaults are a contract with admins
// (../shared/DESIGN.md): keep them, extend them.
type Config struct {
	DataDir  string          `toml:"data_dir"`
	Log      LogConfig       `toml:"log"`
	SMTP     SMTPConfig      `toml:"smtp"`
	Accounts []AccountConfig `toml:"account"`
	Upstream UpstreamConfig  `toml:"upstream"`
	Policy   PolicyConfig    `toml:"policy"`
	PGP      PGPConfig       `toml:"pgp"`
	Archive  ArchiveConfig   `toml:"archive"`
	Metrics  MetricsConfig   `toml:"metrics"`
	Clients  ClientsConfig   `toml:"autoconfig"`
	OAuth2   OAuth2Config    `toml:"oauth2"`

	// Path is the file the configuration was read from; relative paths in it
	// are taken relative to its folder.
	Path  string         `toml:"-"`
	lines map[string]int // key path -> line, for error messages
}

type LogConfig struct {
	Level  string `toml:"level"`  // debug, info, warn, error
	Format string `toml:"format"` // text or json
}

type SMTPConfig struct {
	Hostname        string   `toml:"hostname"`
	Submission      string   `toml:"submission"`  // STARTTLS; AUTH only after TLS
	Submissions     string   `toml:"submissions"` // implicit TLS; "" turns it off
	TLSCert         string   `toml:"tls_cert"`
	TLSKey          string   `toml:"tls_key"`
	MaxMessageBytes int64    `toml:"max_message_bytes"`
	MaxRecipients   int      `toml:"max_recipients"`
	Timeout         Duration `toml:"timeout"`         // idle time allowed between commands
	GreetingWait    Duration `toml:"greeting_wait"`   // listen for early talkers before the 220; "0s" turns it off
	MaxConnections  int      `toml:"max_connections"` // open client connections, both ports together
	// Those from one client address (an IPv6 /64), so that one host cannot take them all.
	MaxConnectionsPerIP int `toml:"max_connections_per_ip"`
	// The practice's networks ("192.168.1.0/24", or one address): failed
	// logins from them never count against an account's hourly ceiling.
	TrustedNetworks []string `toml:"trusted_networks"`
}

// trustedNetworks are smtp.trusted_networks, checked by validate.
func (c SMTPConfig) trustedNetworks() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range c.TrustedNetworks {
		if p, err := parseNetwork(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// parseNetwork takes a prefix or a lone address (as its /32 or /128).
func parseNetwork(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	if p.Bits() <= 0 {
		return netip.Prefix{}, errors.New("would trust every address")
	}
	return p.Masked(), nil
}

type AccountConfig struct {
	Username             string   `toml:"username"`
	PasswordHash         string   `toml:"password_hash"`
	Addresses            []string `toml:"addresses"`
	UpstreamUsername     string   `toml:"upstream_username"`
	UpstreamPasswordFile string   `toml:"upstream_password_file"`
	UpstreamAuth         string   `toml:"upstream_auth"` // password (default) or oauth2

	IMAP      *AccountIMAPConfig `toml:"imap"`      // read the account's mailbox for clients' mail
	Autoreply *AutoreplyConfig   `toml:"autoreply"` // acknowledge clients' messages
}

// AccountIMAPConfig is [account.imap]: the account's mailbox at the
// provider, read (never changed) to bring clients' replies into the record.
type AccountIMAPConfig struct {
	Address      string   `toml:"address"`       // host:port, e.g. imap.gmail.com:993
	TLS          string   `toml:"tls"`           // implicit (993) or starttls (143); never plaintext
	CAFile       string   `toml:"ca_file"`       // a private CA; empty: the system's roots
	Username     string   `toml:"username"`      // default: the account's upstream_username
	PasswordFile string   `toml:"password_file"` // default: the account's upstream_password_file, or its OAuth 2.0 grant
	Folders      []string `toml:"folders"`       // default: ["INBOX"]
	Poll         Duration `toml:"poll"`          // without IDLE, or with several folders
}

// AutoreplyConfig is [account.autoreply]: one acknowledgement per client per
// period, sent through the relay like any message of the account.
type AutoreplyConfig struct {
	Every   Duration `toml:"every"`   // at most one reply per client in this period
	From    string   `toml:"from"`    // one of the account's addresses; default: the first
	Subject string   `toml:"subject"` // default: "Your message was received"
	Text    string   `toml:"text"`    // turnaround time, crisis resources: the practice's words
}

type UpstreamConfig struct {
	Address      string   `toml:"address"` // "outbox" or host:port
	TLS          string   `toml:"tls"`     // starttls or implicit
	CAFile       string   `toml:"ca_file"`
	Workers      int      `toml:"workers"`
	Lifetime     Duration `toml:"lifetime"`      // give up and bounce after this long
	DelayWarning Duration `toml:"delay_warning"` // tell the sender once when still queued after this long
	RetryMin     Duration `toml:"retry_min"`
	RetryMax     Duration `toml:"retry_max"`
	Timeout      Duration `toml:"timeout"` // per SMTP command to the provider
}

type PolicyConfig struct {
	InternalDomains []string     `toml:"internal_domains"`
	Notice          string       `toml:"notice"`
	Rules           []RuleConfig `toml:"rule"`
}

// ContentRules are the [[policy.rule]] entries as the policy takes them.
func (p PolicyConfig) ContentRules() []rules.ContentRule {
	var out []rules.ContentRule
	for _, r := range p.Rules {
		out = append(out, rules.ContentRule{Name: r.Name, Pattern: r.Pattern, On: r.On, Action: r.Action, Reply: r.Reply})
	}
	return out
}

// RuleConfig is one [[policy.rule]]: a content rule for copies that would go out in clear.
type RuleConfig struct {
	Name    string `toml:"name"`
	Pattern string `toml:"pattern"` // Go regular expression (RE2)
	On      string `toml:"on"`      // subject, body or any (default any)
	Action  string `toml:"action"`  // refuse or require_encryption
	Reply   string `toml:"reply"`   // the text the therapist sees
}

type PGPConfig struct {
	PracticeKey               string `toml:"practice_key"`
	PracticeKeyPassphraseFile string `toml:"practice_key_passphrase_file"`
	WKD                       bool   `toml:"wkd"`
	Autocrypt                 string `toml:"autocrypt"` // use, propose, ignore
}

// MetricsConfig is the operator's HTTP listener: /metrics, /healthz, /readyz.
type MetricsConfig struct {
	Listen string `toml:"listen"` // "" turns it off; keep it on loopback or a management network
}

// ClientsConfig serves mail clients their settings (Thunderbird autoconfig,
// Outlook autodiscover).
type ClientsConfig struct {
	Listen      string `toml:"listen"`       // plain HTTP (Thunderbird tries it after HTTPS); "" off
	ListenTLS   string `toml:"listen_tls"`   // HTTPS with the submission certificate; "" off
	DisplayName string `toml:"display_name"` // what the client shows for the account's servers
	IMAP        string `toml:"imap"`         // the provider's IMAP host:port for incoming mail; "" leaves it out
	IMAPTLS     string `toml:"imap_tls"`     // implicit or starttls
}

type ArchiveConfig struct {
	PublicKey string         `toml:"public_key"`
	Retention Duration       `toml:"retention"`
	Viewers   []ViewerConfig `toml:"viewer"`
}

// ViewerConfig is one [[archive.viewer]]: a login for `sealpost archive
// serve-imap`, the read-only IMAP view of the record for auditors.
type ViewerConfig struct {
	Username     string `toml:"username"`
	PasswordHash string `toml:"password_hash"` // from sealpost passwd
}

// Duration is a time span written as Go does ("90s", "4h30m") or with the
// units admins use for queues and retention: d (days), w (weeks), y (365 days).
type Duration time.Duration

var spanRE = regexp.MustCompile(`^(\d+)([dwy])$`)

func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if m := spanRE.FindStringSubmatch(s); m != nil {
		n, err := strconv.Atoi(m[1])
		if err != nil {
			return fmt.Errorf("invalid duration %q", s)
		}
		day := 24 * time.Hour
		unit := map[string]time.Duration{"d": day, "w": 7 * day, "y": 365 * day}[m[2]]
		*d = Duration(time.Duration(n) * unit)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("invalid duration %q (examples: 30s, 15m, 4h, 5d, 7y)", s)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ConfigError is one problem in the configuration, with where it is.
type ConfigError struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		b.WriteString(": " + e.Key)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

// ConfigErrors is every problem found in one configuration file.
type ConfigErrors []ConfigError

func (es ConfigErrors) Error() string {
	if len(es) == 1 {
		return es[0].Error()
	}
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return fmt.Sprintf("%d problems in the configuration:\n  %s", len(es), strings.Join(parts, "\n  "))
}

func defaultConfig() Config {
	return Config{
		DataDir: "/var/lib/sealpost",
		Log:     LogConfig{Level: "info", Format: "text"},
		SMTP: SMTPConfig{
			Hostname:        "localhost",
			Submission:      "127.0.0.1:587",
			Submissions:     "127.0.0.1:465",
			MaxMessageBytes: 36700160,
			MaxRecipients:   100,
			Timeout:         Duration(5 * time.Minute),
			GreetingWait:    Duration(200 * time.Millisecond),
			MaxConnections:  200,
			// Postfix's smtpd_client_connection_count_limit; a mail
			// client opens a few at most.
			MaxConnectionsPerIP: 50,
		},
		Upstream: UpstreamConfig{
			Address:      "outbox",
			TLS:          "starttls",
			Workers:      4,
			Lifetime:     Duration(5 * 24 * time.Hour),
			DelayWarning: Duration(4 * time.Hour),
			RetryMin:     Duration(5 * time.Minute),
			RetryMax:     Duration(70 * time.Minute),
			Timeout:      Duration(2 * time.Minute),
		},
		PGP:     PGPConfig{Autocrypt: "propose"},
		Clients: ClientsConfig{DisplayName: "Practice mail (sealpost)", IMAPTLS: "implicit"},
		Archive: ArchiveConfig{Retention: Duration(7 * 365 * 24 * time.Hour)},
	}
}

// LoadConfig reads and checks a configuration file. On failure the error is a
// ConfigErrors listing every problem with its key and line, or an I/O error.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	cfg := defaultConfig()
	cfg.Path = abs
	cfg.lines, err = keyLines(data)
	if err != nil {
		ce := err.(ConfigError)
		ce.File = path
		return nil, ConfigErrors{ce}
	}
	dec := toml.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	var es ConfigErrors
	if err := dec.Decode(&cfg); err != nil {
		var strict *toml.StrictMissingError
		var derr *toml.DecodeError
		switch {
		case errors.As(err, &strict):
			// The known keys were decoded: report the unknown ones together
			// with whatever else is wrong.
			for _, e := range strict.Errors {
				line, _ := e.Position()
				es = append(es, ConfigError{File: path, Line: line, Key: strings.Join(e.Key(), "."), Msg: "unknown key (misspelt, or in the wrong [section]?)"})
			}
		case errors.As(err, &derr):
			line, _ := derr.Position()
			return nil, ConfigErrors{{File: path, Line: line, Key: strings.Join(derr.Key(), "."), Msg: derr.Error()}}
		default:
			return nil, ConfigErrors{{File: path, Msg: err.Error()}}
		}
	}
	es = append(es, cfg.validate(path)...)
	if len(es) > 0 {
		sort.SliceStable(es, func(i, j int) bool { return es[i].Line < es[j].Line })
		return nil, es
	}
	cfg.resolvePaths()
	return &cfg, nil
}

// keyLines maps every key path in the document ("smtp.submission",
// "account[1].addresses") to the line it is on, so that problems found after
// decoding can still name their line.
func keyLines(data []byte) (map[string]int, error) {
	lines := map[string]int{}
	arrayCount := map[string]int{}
	var p unstable.Parser
	p.Reset(data)
	prefix := ""
	keyOf := func(n *unstable.Node) string {
		var parts []string
		it := n.Key()
		for it.Next() {
			parts = append(parts, string(it.Node().Data))
		}
		return strings.Join(parts, ".")
	}
	lineOf := func(n *unstable.Node) int {
		it := n.Key()
		if it.Next() {
			return p.Shape(it.Node().Raw).Start.Line
		}
		return 0
	}
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table:
			prefix = keyOf(e)
			lines[prefix] = lineOf(e)
		case unstable.ArrayTable:
			k := keyOf(e)
			prefix = fmt.Sprintf("%s[%d]", k, arrayCount[k])
			arrayCount[k]++
			lines[prefix] = lineOf(e)
		case unstable.KeyValue:
			k := keyOf(e)
			if prefix != "" {
				k = prefix + "." + k
			}
			lines[k] = lineOf(e)
		}
	}
	if err := p.Error(); err != nil {
		var perr *unstable.ParserError
		if errors.As(err, &perr) {
			return nil, ConfigError{Line: p.Shape(p.Range(perr.Highlight)).Start.Line, Msg: "syntax error: " + perr.Message}
		}
		return nil, ConfigError{Msg: "syntax error: " + err.Error()}
	}
	return lines, nil
}

func (c *Config) problem(es *ConfigErrors, file, key, format string, args ...any) {
	line := c.lines[key]
	if line == 0 {
		// Point at the section when the key itself was left out.
		if i := strings.LastIndexByte(key, '.'); i > 0 {
			line = c.lines[key[:i]]
		}
	}
	*es = append(*es, ConfigError{File: file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (c *Config) validate(file string) ConfigErrors {
	var es ConfigErrors
	bad := func(key, format string, args ...any) { c.problem(&es, file, key, format, args...) }

	if c.DataDir == "" {
		bad("data_dir", "must name a folder for the spool, archive and registry")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "must be text or json, not %q", c.Log.Format)
	}

	if c.SMTP.Hostname == "" {
		bad("smtp.hostname", "must be the name clients connect to")
	}
	if c.SMTP.Submission == "" && c.SMTP.Submissions == "" {
		bad("smtp.submission", "at least one of submission and submissions must be set")
	}
	for key, v := range map[string]string{"smtp.submission": c.SMTP.Submission, "smtp.submissions": c.SMTP.Submissions} {
		if v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			bad(key, "must be host:port, e.g. 127.0.0.1:587 (%v)", err)
		}
	}
	if (c.SMTP.TLSCert == "") != (c.SMTP.TLSKey == "") {
		bad("smtp.tls_cert", "tls_cert and tls_key go together: set both, or neither for a self-made certificate")
	}
	if c.SMTP.MaxMessageBytes < 1024 {
		bad("smtp.max_message_bytes", "must be at least 1024")
	}
	if c.SMTP.GreetingWait < 0 || c.SMTP.GreetingWait.D() > 10*time.Second {
		bad("smtp.greeting_wait", "must be between 0s (off) and 10s")
	}
	if c.SMTP.MaxConnections < 1 || c.SMTP.MaxConnections > 100000 {
		bad("smtp.max_connections", "must be between 1 and 100000")
	}
	if c.SMTP.MaxConnectionsPerIP < 1 || c.SMTP.MaxConnectionsPerIP > 100000 {
		bad("smtp.max_connections_per_ip", "must be between 1 and 100000")
	}
	if c.SMTP.MaxRecipients < 1 || c.SMTP.MaxRecipients > 1000 {
		bad("smtp.max_recipients", "must be between 1 and 1000")
	}
	for _, n := range c.SMTP.TrustedNetworks {
		if _, err := parseNetwork(n); err != nil {
			bad("smtp.trusted_networks", "%q: must be a network such as 192.168.1.0/24 or fd00:1::/64, or one address (%v)", n, err)
		}
	}

	if len(c.Accounts) == 0 {
		bad("account", "no [[account]]: nobody could log in")
	}
	users := map[string]bool{}
	owner := map[string]string{}
	for i, a := range c.Accounts {
		k := fmt.Sprintf("account[%d]", i)
		if a.Username == "" {
			bad(k+".username", "must be set")
		} else if users[a.Username] {
			bad(k+".username", "%q is used by two accounts", a.Username)
		}
		users[a.Username] = true
		if err := checkPasswordHash(a.PasswordHash); err != nil {
			bad(k+".password_hash", "%v (make one with: sealpost passwd)", err)
		}
		if len(a.Addresses) == 0 {
			bad(k+".addresses", "must list the addresses this account may send as")
		}
		for _, s := range a.Addresses {
			n, err := addr.Normalize(s)
			if err != nil {
				bad(k+".addresses", "%q: %v", s, err)
				continue
			}
			if o, ok := owner[n]; ok && o != a.Username {
				bad(k+".addresses", "%q also belongs to account %q", s, o)
			}
			owner[n] = a.Username
		}
		switch a.UpstreamAuth {
		case "":
			c.Accounts[i].UpstreamAuth = "password"
		case "password":
		case "oauth2":
			if filepath.Base(a.Username) != a.Username || strings.HasPrefix(a.Username, ".") {
				// It names the grant's file in data_dir/oauth2.
				bad(k+".username", "%q: an account that signs in with OAuth 2.0 needs a username without / or a leading dot", a.Username)
			}
			if a.UpstreamUsername == "" {
				bad(k+".upstream_username", "upstream_auth = \"oauth2\" needs the mailbox address to log in as")
			}
			if a.UpstreamPasswordFile != "" {
				bad(k+".upstream_password_file", "upstream_auth = \"oauth2\" logs in without a password: remove upstream_password_file")
			}
		default:
			bad(k+".upstream_auth", "must be password or oauth2, not %q", a.UpstreamAuth)
		}
	}
	if c.usesOAuth2() {
		c.validateOAuth2(bad)
	}

	for i, a := range c.Accounts {
		k := fmt.Sprintf("account[%d]", i)
		if m := a.IMAP; m != nil {
			if _, _, err := net.SplitHostPort(m.Address); err != nil {
				bad(k+".imap.address", "must be the provider's IMAP host:port, e.g. imap.gmail.com:993 (%v)", err)
			}
			switch m.TLS {
			case "implicit", "starttls":
			case "":
				m.TLS = "implicit"
			default:
				bad(k+".imap.tls", "must be implicit or starttls, not %q (sealpost never reads mail in clear)", m.TLS)
			}
			if m.Username == "" {
				m.Username = a.UpstreamUsername
			}
			if m.PasswordFile == "" {
				m.PasswordFile = a.UpstreamPasswordFile
			}
			if m.Username == "" || (m.PasswordFile == "" && a.UpstreamAuth != "oauth2") {
				bad(k+".imap.username", "needs a username and password_file (or the account's upstream_username and upstream_password_file or upstream_auth = \"oauth2\")")
			}
			if len(m.Folders) == 0 {
				m.Folders = []string{"INBOX"}
			}
			if m.Poll == 0 {
				m.Poll = Duration(2 * time.Minute)
			} else if m.Poll.D() < 10*time.Second {
				bad(k+".imap.poll", "must be at least 10s")
			}
		}
		if r := a.Autoreply; r != nil {
			if a.IMAP == nil {
				bad(k+".autoreply", "needs [account.imap]: acknowledgements answer the messages read there")
			}
			if strings.TrimSpace(r.Text) == "" {
				bad(k+".autoreply.text", "must hold the acknowledgement: the turnaround time and where to turn in a crisis")
			}
			if r.Every == 0 {
				r.Every = Duration(7 * 24 * time.Hour)
			} else if r.Every.D() < time.Hour {
				bad(k+".autoreply.every", "must be at least 1h (one reply per client per period)")
			}
			if r.Subject == "" {
				r.Subject = "Your message was received"
			}
			if r.From == "" && len(a.Addresses) > 0 {
				r.From = a.Addresses[0]
			} else if r.From != "" {
				owned := false
				for _, x := range a.Addresses {
					owned = owned || strings.EqualFold(x, r.From)
				}
				if !owned {
					bad(k+".autoreply.from", "%q is not one of the account's addresses", r.From)
				}
			}
		}
	}

	switch c.Upstream.TLS {
	case "starttls", "implicit":
	case "none":
		// Only for a relay on this machine (a local Postfix, a test sink).
		host, _, _ := net.SplitHostPort(c.Upstream.Address)
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			bad("upstream.tls", "\"none\" is allowed only for a loopback address such as 127.0.0.1:25; sealpost never sends to a real host in clear")
		}
		if c.usesOAuth2() {
			bad("upstream.tls", "\"none\" sends no login, but an account has upstream_auth = \"oauth2\": use starttls or implicit")
		}
	default:
		bad("upstream.tls", "must be starttls or implicit, not %q (sealpost never sends to the provider in clear)", c.Upstream.TLS)
	}
	if c.Upstream.Address != "outbox" {
		if _, _, err := net.SplitHostPort(c.Upstream.Address); err != nil {
			bad("upstream.address", "must be \"outbox\" or the provider's host:port, e.g. smtp.example.com:587 (%v)", err)
		}
		for i, a := range c.Accounts {
			// No upstream_username: the provider takes mail from this host
			// without a login (a smarthost that authorises by address).
			if a.UpstreamUsername != "" && a.UpstreamPasswordFile == "" && a.UpstreamAuth == "password" && c.Upstream.TLS != "none" {
				bad(fmt.Sprintf("account[%d].upstream_password_file", i), "must name a file holding the provider password for %q", a.UpstreamUsername)
			}
		}
	}
	if c.Upstream.Workers < 1 || c.Upstream.Workers > 256 {
		bad("upstream.workers", "must be between 1 and 256")
	}
	if c.Upstream.RetryMin.D() <= 0 || c.Upstream.RetryMax.D() < c.Upstream.RetryMin.D() {
		bad("upstream.retry_max", "retry_min must be positive and retry_max at least retry_min")
	}
	if c.Upstream.Lifetime.D() < c.Upstream.RetryMin.D() {
		bad("upstream.lifetime", "must be longer than retry_min")
	}

	for key, v := range map[string]string{"metrics.listen": c.Metrics.Listen, "autoconfig.listen": c.Clients.Listen,
		"autoconfig.listen_tls": c.Clients.ListenTLS, "autoconfig.imap": c.Clients.IMAP} {
		if v == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
			bad(key, "must be host:port, e.g. 127.0.0.1:9587 (%v)", err)
		}
	}
	switch c.Clients.IMAPTLS {
	case "implicit", "starttls":
	default:
		bad("autoconfig.imap_tls", "must be implicit or starttls, not %q", c.Clients.IMAPTLS)
	}

	for _, p := range rules.CheckSettings(c.Policy.InternalDomains, c.Policy.Notice, c.Policy.ContentRules()) {
		bad("policy."+p.Key, "%s", p.Msg)
	}
	switch c.PGP.Autocrypt {
	case "use", "propose", "ignore":
	default:
		bad("pgp.autocrypt", "must be use, propose or ignore, not %q", c.PGP.Autocrypt)
	}
	viewers := map[string]bool{}
	for i, v := range c.Archive.Viewers {
		k := fmt.Sprintf("archive.viewer[%d]", i)
		if v.Username == "" || viewers[v.Username] {
			bad(k+".username", "must be set, and different for every viewer")
		}
		viewers[v.Username] = true
		if err := checkPasswordHash(v.PasswordHash); err != nil {
			bad(k+".password_hash", "%v (make one with: sealpost passwd)", err)
		}
	}
	if c.Archive.Retention.D() < 24*time.Hour {
		bad("archive.retention", "must be at least a day (records must be kept for years: 7y is the default)")
	}
	sort.SliceStable(es, func(i, j int) bool { return es[i].Line < es[j].Line })
	return es
}

// resolvePaths makes every relative path in the configuration relative to
// the configuration file's folder, so sealpost does the same from any working
// directory (systemd starts it in /).
func (c *Config) resolvePaths() {
	base := filepath.Dir(c.Path)
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	abs(&c.DataDir)
	abs(&c.SMTP.TLSCert)
	abs(&c.SMTP.TLSKey)
	abs(&c.Upstream.CAFile)
	abs(&c.PGP.PracticeKey)
	abs(&c.PGP.PracticeKeyPassphraseFile)
	abs(&c.Archive.PublicKey)
	abs(&c.OAuth2.ClientSecretFile)
	for i := range c.Accounts {
		abs(&c.Accounts[i].UpstreamPasswordFile)
		if m := c.Accounts[i].IMAP; m != nil {
			abs(&m.CAFile)
			abs(&m.PasswordFile)
		}
	}
}

// OAuth2Config is [oauth2]: the practice's app registration at its provider.
type OAuth2Config struct {
	Provider         string   `toml:"provider"`           // microsoft, google or custom
	ClientID         string   `toml:"client_id"`          // the app registration's (client) ID
	ClientSecretFile string   `toml:"client_secret_file"` // Google's desktop clients have one; public clients none
	Tenant           string   `toml:"tenant"`             // microsoft: the directory (tenant) ID or domain
	AuthURL          string   `toml:"auth_url"`           // custom, or to override a provider's
	TokenURL         string   `toml:"token_url"`
	DeviceAuthURL    string   `toml:"device_auth_url"`
	Scopes           []string `toml:"scopes"`
}

// settings are [oauth2] as package oauth takes them, without the client
// secret, which is in its file.
func (o OAuth2Config) settings() oauth.Settings {
	return oauth.Settings{Provider: o.Provider, ClientID: o.ClientID, Tenant: o.Tenant, AuthURL: o.AuthURL,
		TokenURL: o.TokenURL, DeviceAuthURL: o.DeviceAuthURL, Scopes: o.Scopes}
}

// usesOAuth2 says whether any account logs in to the provider with OAuth 2.0.
func (c *Config) usesOAuth2() bool {
	for _, a := range c.Accounts {
		if a.UpstreamAuth == "oauth2" {
			return true
		}
	}
	return false
}

// validateOAuth2 checks [oauth2] when an account needs it.
func (c *Config) validateOAuth2(bad func(key, format string, args ...any)) {
	o := c.OAuth2
	for _, p := range o.settings().Check() {
		bad("oauth2."+p.Key, "%s", p.Msg)
	}
	if o.Provider == "google" && o.ClientSecretFile == "" {
		bad("oauth2.client_secret_file", "must name a file holding the Google desktop client's secret")
	}
}

// Line returns the line of a key path in the file, 0 when unknown.
func (c *Config) Line(key string) int { return c.lines[key] }
