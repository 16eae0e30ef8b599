package config

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/password"
	"github.com/sealpost/sealpost/rules"
)

// reporter records one problem under a key path ("account[0].addresses").
type reporter func(key, format string, args ...any)

// validate checks the decoded configuration section by section and fills in
// the defaults that depend on other keys.
func (c *Config) validate(file string) Errors {
	var es Errors
	bad := func(key, format string, args ...any) {
		line := c.lines[key]
		if line == 0 {
			// Point at the section when the key itself was left out.
			if i := strings.LastIndexByte(key, '.'); i > 0 {
				line = c.lines[key[:i]]
			}
		}
		es = append(es, Error{File: file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	c.validateBasics(bad)
	c.validateSMTP(bad)
	c.validateAccounts(bad)
	if c.usesOAuth2() {
		c.validateOAuth2(bad)
	}
	for i := range c.Accounts {
		c.validateMailbox(i, bad)
	}
	c.validateUpstream(bad)
	c.validateListeners(bad)
	c.validatePolicy(bad)
	c.validateSealed(bad)
	c.validateHours(bad)
	c.validateArchive(bad)
	c.validateArchiveS3(bad)
	c.validateConsole(bad)
	c.validateStore(bad)
	sort.SliceStable(es, func(i, j int) bool { return es[i].Line < es[j].Line })
	return es
}

func (c *Config) validateBasics(bad reporter) {
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
}

func (c *Config) validateSMTP(bad reporter) {
	s := c.SMTP
	if s.Hostname == "" {
		bad("smtp.hostname", "must be the name clients connect to")
	}
	if s.Submission == "" && s.Submissions == "" {
		bad("smtp.submission", "at least one of submission and submissions must be set")
	}
	for key, v := range map[string]string{"smtp.submission": s.Submission, "smtp.submissions": s.Submissions} {
		if v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			bad(key, "must be host:port, e.g. 127.0.0.1:587 (%v)", err)
		}
	}
	if (s.TLSCert == "") != (s.TLSKey == "") {
		bad("smtp.tls_cert", "tls_cert and tls_key go together: set both, or neither for a self-made certificate")
	}
	if s.MaxMessageBytes < 1024 {
		bad("smtp.max_message_bytes", "must be at least 1024")
	}
	if s.GreetingWait < 0 || s.GreetingWait.D() > 10*time.Second {
		bad("smtp.greeting_wait", "must be between 0s (off) and 10s")
	}
	if s.MaxConnections < 1 || s.MaxConnections > 100000 {
		bad("smtp.max_connections", "must be between 1 and 100000")
	}
	if s.MaxConnectionsPerIP < 1 || s.MaxConnectionsPerIP > 100000 {
		bad("smtp.max_connections_per_ip", "must be between 1 and 100000")
	}
	if s.MaxRecipients < 1 || s.MaxRecipients > 1000 {
		bad("smtp.max_recipients", "must be between 1 and 1000")
	}
	for _, n := range s.TrustedNetworks {
		if _, err := parseNetwork(n); err != nil {
			bad("smtp.trusted_networks", "%q: must be a network such as 192.168.1.0/24 or fd00:1::/64, or one address (%v)", n, err)
		}
	}
}

// validateAccounts checks the logins, the addresses each may send as, and
// how each logs in to the provider.
func (c *Config) validateAccounts(bad reporter) {
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
		if err := password.CheckHash(a.PasswordHash); err != nil {
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
}

// validateOAuth2 checks [oauth2] when an account needs it.
func (c *Config) validateOAuth2(bad reporter) {
	o := c.OAuth2
	for _, p := range o.Settings().Check() {
		bad("oauth2."+p.Key, "%s", p.Msg)
	}
	if o.Provider == "google" && o.ClientSecretFile == "" {
		bad("oauth2.client_secret_file", "must name a file holding the Google desktop client's secret")
	}
}

// validateMailbox checks the account's [account.imap] and
// [account.autoreply], and fills in their defaults.
func (c *Config) validateMailbox(i int, bad reporter) {
	a := c.Accounts[i]
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

func (c *Config) validateUpstream(bad reporter) {
	u := c.Upstream
	switch u.TLS {
	case "starttls", "implicit":
	case "none":
		// Only for a relay on this machine (a local Postfix, a test sink).
		host, _, _ := net.SplitHostPort(u.Address)
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			bad("upstream.tls", "\"none\" is allowed only for a loopback address such as 127.0.0.1:25; sealpost never sends to a real host in clear")
		}
		if c.usesOAuth2() {
			bad("upstream.tls", "\"none\" sends no login, but an account has upstream_auth = \"oauth2\": use starttls or implicit")
		}
	default:
		bad("upstream.tls", "must be starttls or implicit, not %q (sealpost never sends to the provider in clear)", u.TLS)
	}
	if u.Address != "outbox" {
		if _, _, err := net.SplitHostPort(u.Address); err != nil {
			bad("upstream.address", "must be \"outbox\" or the provider's host:port, e.g. smtp.example.com:587 (%v)", err)
		}
		for i, a := range c.Accounts {
			// No upstream_username: the provider takes mail from this host
			// without a login (a smarthost that authorises by address).
			if a.UpstreamUsername != "" && a.UpstreamPasswordFile == "" && a.UpstreamAuth == "password" && u.TLS != "none" {
				bad(fmt.Sprintf("account[%d].upstream_password_file", i), "must name a file holding the provider password for %q", a.UpstreamUsername)
			}
		}
	}
	if u.Workers < 1 || u.Workers > 256 {
		bad("upstream.workers", "must be between 1 and 256")
	}
	if u.RetryMin.D() <= 0 || u.RetryMax.D() < u.RetryMin.D() {
		bad("upstream.retry_max", "retry_min must be positive and retry_max at least retry_min")
	}
	if u.Lifetime.D() < u.RetryMin.D() {
		bad("upstream.lifetime", "must be longer than retry_min")
	}
}

// validateListeners checks the HTTP listeners and what mail clients are
// told.
func (c *Config) validateListeners(bad reporter) {
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
}

// validatePolicy asks rules about [policy] (as the policy will refuse it)
// and checks [pgp].
func (c *Config) validatePolicy(bad reporter) {
	for _, p := range rules.CheckSettings(c.Policy.InternalDomains, c.Policy.Notice, c.Policy.ContentRules()) {
		bad("policy."+p.Key, "%s", p.Msg)
	}
	if c.Policy.PartialSends != "refuse" && c.Policy.PartialSends != "allow" {
		bad("policy.partial_sends", "must be refuse (a message with a refused recipient goes to nobody) or allow (it goes to the others), not %q", c.Policy.PartialSends)
	}
	switch rules.AutocryptMode(c.PGP.Autocrypt) {
	case rules.AutocryptUse, rules.AutocryptPropose, rules.AutocryptIgnore:
	default:
		bad("pgp.autocrypt", "must be use, propose or ignore, not %q", c.PGP.Autocrypt)
	}
}

var validNodeName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

func (c *Config) validateArchive(bad reporter) {
	viewers := map[string]bool{}
	for i, v := range c.Archive.Viewers {
		k := fmt.Sprintf("archive.viewer[%d]", i)
		if v.Username == "" || viewers[v.Username] {
			bad(k+".username", "must be set, and different for every viewer")
		}
		viewers[v.Username] = true
		if err := password.CheckHash(v.PasswordHash); err != nil {
			bad(k+".password_hash", "%v (make one with: sealpost passwd)", err)
		}
	}
	if c.Archive.Node != "" && !validNodeName.MatchString(c.Archive.Node) {
		bad("archive.node", "must be 1 to 32 lowercase letters, digits or dashes, starting with a letter or digit (it names the node's chain in object keys and exports), not %q", c.Archive.Node)
	}
	if c.Archive.Retention.D() < 24*time.Hour {
		bad("archive.retention", "must be at least a day (records must be kept for years: 7y is the default)")
	}
}
