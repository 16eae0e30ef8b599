package setup

import (
	"bytes"
	"path/filepath"
	"text/template"

	"github.com/sealpost/sealpost/internal/tlsconf"
)

// configText is the configuration Write puts in place.
func configText(o Options, hash string) ([]byte, error) {
	var b bytes.Buffer
	err := configTemplate.Execute(&b, map[string]string{
		"DataDir": o.DataDir, "Hostname": o.Hostname, "Domain": o.Domain, "User": o.User, "Address": o.Address, "Hash": hash,
		"Cert": filepath.Join(o.Dir, "tls", tlsconf.CertFile), "Key": filepath.Join(o.Dir, "tls", tlsconf.KeyFile),
		"PracticeKey": filepath.Join(o.Dir, PracticeKeyFile), "ArchiveKey": filepath.Join(o.Dir, ArchivePublicKeyFile),
		"Secret": filepath.Join(o.Dir, UpstreamPasswordFile), "CSRKey": filepath.Join(o.Dir, CSRKeyFile), "Metrics": o.MetricsListen,
	})
	return b.Bytes(), err
}

// The content rule is config.example.toml's (a test keeps them the same):
// a real install must not silently lack what the example shows.
var configTemplate = template.Must(template.New("config").Parse(`# sealpost configuration, written by sealpost init. Every key is explained in
# config.example.toml and the README; sealpost check -c THIS_FILE tells what is wrong.

data_dir = "{{.DataDir}}"

[log]
level = "info"
format = "json"                        # for journald and log collectors; "text" reads better by eye

[smtp]
hostname = "{{.Hostname}}"
submission = "0.0.0.0:587"             # STARTTLS; AUTH only after TLS
submissions = "0.0.0.0:465"            # implicit TLS
tls_cert = "{{.Cert}}"                 # signed by tls/ca.pem, the local CA for {{.Hostname}}; sudo sealpost tls renew
tls_key = "{{.Key}}"                   # renews it (the Debian package's weekly timer does). With a public CA's
                                       # certificate for tls/request.csr: that file, and tls_key = "{{.CSRKey}}"
max_message_bytes = 36700160

[[account]]
username = "{{.User}}"
password_hash = "{{.Hash}}"
addresses = ["{{.Address}}"]
upstream_username = "{{.Address}}"
upstream_password_file = ""            # once [upstream] names the provider: a file holding its password,
                                       # e.g. "{{.Secret}}" (chmod 640, group sealpost)
upstream_auth = "password"             # or "oauth2" (Microsoft 365, Google): no password file; needs [oauth2]
                                       # and one sealpost oauth2 login --account {{.User}}

[upstream]
address = "outbox"                     # set to the provider: "smtp.gmail.com:587", "smtp.office365.com:587"
tls = "starttls"

[policy]
internal_domains = ["{{.Domain}}"]
notice = """Notice of Confidentiality: This email may contain protected health information. \
It is intended only for the person to whom it is addressed. If you received it in error, \
please tell the sender and delete it."""

# Content rules run on copies that go to a client in clear (consented
# recipients): "refuse" or "require_encryption" refuses the message with the
# reply below. Internal copies stay inside the practice and are not checked.
# DECIDE: this one is for US practices. Elsewhere, replace the pattern with
# your country's identifiers (a national insurance or health card number),
# or remove the rule; add one [[policy.rule]] per kind of number.
[[policy.rule]]
name = "us-ssn"
pattern = '\b(?:00[1-9]|0[1-9]\d|[1-578]\d{2}|6[0-57-9]\d|66[0-57-9])[- ](?:0[1-9]|[1-9]\d)[- ](?:000[1-9]|00[1-9]\d|0[1-9]\d{2}|[1-9]\d{3})\b'
on = "any"
action = "refuse"
reply = "This message contains what looks like a US Social Security number and may not go to a client in unencrypted email; remove it, or send it encrypted"

[pgp]
practice_key = "{{.PracticeKey}}"
autocrypt = "propose"

[archive]
public_key = "{{.ArchiveKey}}"
retention = "7y"                       # DECIDE: how long your jurisdiction requires records kept

[metrics]
listen = "{{.Metrics}}"               # /metrics, /healthz, /readyz for monitoring (and sealpost healthcheck);
                                       # keep it on loopback or a management network: it has no login

[autoconfig]
listen = ""                            # e.g. "0.0.0.0:80" for autoconfig.{{.Domain}}
listen_tls = ""                        # e.g. "0.0.0.0:443" for autodiscover.{{.Domain}} (Outlook needs HTTPS;
                                       # the certificate names both)
imap = ""                              # the provider's IMAP host:port, e.g. "imap.gmail.com:993"

[console]
listen = "127.0.0.1:8443"              # the practice console over HTTPS with the certificate above; "" turns it off.
                                       # A LAN address is allowed; never one reachable from the internet.
                                       # Therapists log in with their [[account]], auditors with [[archive.viewer]].
# [[console.admin]]                    # consents, keys and the queue (password_hash from: sealpost passwd)
# username = "office"
# password_hash = "..."
`))
