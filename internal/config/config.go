package config

import (
	"path/filepath"
	"time"

	"github.com/sealpost/sealpost/internal/oauth"
	"github.com/sealpost/sealpost/rules"
)

// DefaultPath is where packaged installs keep the configuration.
const DefaultPath = "/etc/sealpost/sealpost.toml"

// Config is sealpost.toml. Keys and defaults are a contract with admins
// (ARCHITECTURE.md): keep them, extend them.
type Config struct {
	DataDir  string          `toml:"data_dir"`
	Log      LogConfig       `toml:"log"`
	SMTP     SMTPConfig      `toml:"smtp"`
	Accounts []AccountConfig `toml:"account"`
	Upstream UpstreamConfig  `toml:"upstream"`
	Policy   PolicyConfig    `toml:"policy"`
	PGP      PGPConfig       `toml:"pgp"`
	Sealed   SealedConfig    `toml:"sealed"`
	Archive  ArchiveConfig   `toml:"archive"`
	Metrics  MetricsConfig   `toml:"metrics"`
	Clients  ClientsConfig   `toml:"autoconfig"`
	OAuth2   OAuth2Config    `toml:"oauth2"`
	Hours    HoursConfig     `toml:"hours"` // office hours; an account's [account.hours] overrides
	Console  ConsoleConfig   `toml:"console"`
	Store    StoreConfig     `toml:"store"` // the registry and keyring in PostgreSQL, shared by several nodes

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

type AccountConfig struct {
	Username             string   `toml:"username"`
	PasswordHash         string   `toml:"password_hash"`
	Addresses            []string `toml:"addresses"`
	UpstreamUsername     string   `toml:"upstream_username"`
	UpstreamPasswordFile string   `toml:"upstream_password_file"`
	UpstreamAuth         string   `toml:"upstream_auth"` // password (default) or oauth2

	IMAP      *AccountIMAPConfig `toml:"imap"`      // read the account's mailbox for clients' mail
	Autoreply *AutoreplyConfig   `toml:"autoreply"` // acknowledge clients' messages
	Hours     *HoursConfig       `toml:"hours"`     // this therapist's office hours, over [hours]
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
	// Crisis are the crisis lines every acknowledgement carries (default:
	// [sealed] crisis); Language the expected answer date's ("en", "de").
	Crisis   string `toml:"crisis"`
	Language string `toml:"language"`
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
	InternalDomains []string `toml:"internal_domains"`
	Notice          string   `toml:"notice"`
	// PartialSends is "refuse" (the default: a message some of whose
	// recipients were refused at RCPT is refused at DATA, so nobody gets
	// it) or "allow" (the others get it).
	PartialSends string       `toml:"partial_sends"`
	Rules        []RuleConfig `toml:"rule"`
}

// AllowPartialSends says whether partial_sends is "allow".
func (p PolicyConfig) AllowPartialSends() bool { return p.PartialSends == "allow" }

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

// SealedConfig is [sealed]: the message a client with a passphrase on file
// (and no usable OpenPGP key) receives around the encrypted PDF. Every key
// has a default (validateSealed).
type SealedConfig struct {
	PracticeName string `toml:"practice_name"` // default: the first internal domain
	Subject      string `toml:"subject"`       // default: "Secure message from <practice_name>"
	// Text is the outer message's body: how to open the PDF, that the
	// passphrase is the one agreed at intake, how to reply. The HTML body
	// is made from it.
	Text string `toml:"text"`
	// Crisis follows Text in the body and is printed on the passphrase card.
	Crisis   string `toml:"crisis"`
	MaxBytes int64  `toml:"max_bytes"` // default: smtp.max_message_bytes
}

// Settings are [sealed] as the policy takes them.
func (s SealedConfig) Settings() rules.SealedSettings {
	return rules.SealedSettings{PracticeName: s.PracticeName, Subject: s.Subject, Text: s.Text, Crisis: s.Crisis, MaxBytes: s.MaxBytes}
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
	PublicKey string   `toml:"public_key"`
	Retention Duration `toml:"retention"`
	// Node names this relay's own archive chain where several relays of a
	// group practice keep theirs side by side (in one bucket, in one
	// auditor's export). Empty on a practice's only relay.
	Node    string           `toml:"node"`
	Viewers []ViewerConfig   `toml:"viewer"`
	S3      *ArchiveS3Config `toml:"s3"` // the off-site copy; nil: none
}

// ViewerConfig is one [[archive.viewer]]: a login for `sealpost archive
// serve-imap`, the read-only IMAP view of the record for auditors.
type ViewerConfig struct {
	Username     string `toml:"username"`
	PasswordHash string `toml:"password_hash"` // from sealpost passwd
}

func defaults() Config {
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
		Policy:  PolicyConfig{PartialSends: "refuse"},
		PGP:     PGPConfig{Autocrypt: "propose"},
		Clients: ClientsConfig{DisplayName: "Practice mail (sealpost)", IMAPTLS: "implicit"},
		Archive: ArchiveConfig{Retention: Duration(7 * 365 * 24 * time.Hour)},
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

// Settings are [oauth2] as package oauth takes them, without the client
// secret, which is in its file.
func (o OAuth2Config) Settings() oauth.Settings {
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

// The layout of data_dir: what lives where.

func (c *Config) SpoolDir() string     { return filepath.Join(c.DataDir, "spool") }
func (c *Config) OutboxDir() string    { return filepath.Join(c.DataDir, "outbox") }
func (c *Config) TLSDir() string       { return filepath.Join(c.DataDir, "tls") }
func (c *Config) ControlPath() string  { return filepath.Join(c.DataDir, "control.sock") }
func (c *Config) ArchiveDir() string   { return filepath.Join(c.DataDir, "archive") }
func (c *Config) RegistryPath() string { return filepath.Join(c.DataDir, "registry.db") }
func (c *Config) KeyringPath() string  { return filepath.Join(c.DataDir, "keyring.db") }
func (c *Config) LogHashKey() string   { return filepath.Join(c.DataDir, "loghash.key") }

// Line returns the line of a key path in the file, 0 when unknown.
func (c *Config) Line(key string) int { return c.lines[key] }
