package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/sealpost/sealpost/internal/testutil"
)

// Dovecot is a private Dovecot instance: the provider's IMAP server, with
// TLS on its own loopback ports (TESTING.md).
type Dovecot struct {
	Dir                 string
	IMAPPort, IMAPSPort int
	PKI                 *testutil.PKI
	User, Password      string
	OAuth               *FakeOAuth // logins by token instead of Password
	conf                string
}

// StartDovecot runs Dovecot with one user whose mail is a Maildir.
func StartDovecot(t testing.TB, user, password string) *Dovecot {
	t.Helper()
	return StartDovecotWith(t, user, password, nil)
}

// StartDovecotWith: with oauth set, the user logs in by XOAUTH2 with an
// access token from it, and by no password.
func StartDovecotWith(t testing.TB, user, password string, oauth *FakeOAuth) *Dovecot {
	t.Helper()
	testutil.RequireTools(t, "dovecot")
	testutil.RequireRoot(t, "Dovecot runs its mail processes as nobody")
	d := &Dovecot{Dir: t.TempDir(), IMAPPort: FreePort(t), IMAPSPort: FreePort(t), PKI: testutil.NewPKI(t), User: user, Password: password, OAuth: oauth}
	openUp(d.Dir)
	for _, sub := range []string{"run", "state", "mail"} {
		os.MkdirAll(filepath.Join(d.Dir, sub), 0o755)
	}
	exec.Command("chown", "nobody:nogroup", filepath.Join(d.Dir, "mail")).Run()
	d.conf = filepath.Join(d.Dir, "dovecot.conf")
	os.WriteFile(d.conf, []byte(fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <%[2]s
ssl_key = <%[3]s
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[4]d
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = %[5]d
    ssl = yes
  }
}
%[6]s
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=%[1]s/mail/%%u
}
mail_location = maildir:~/Maildir
first_valid_uid = 1
`, d.Dir, d.PKI.CertFile, d.PKI.KeyFile, d.IMAPPort, d.IMAPSPort, dovecotPassdb(t, d.Dir, user, password, oauth))), 0o644)
	d.Start(t)
	t.Cleanup(func() { d.Stop(t) })
	return d
}

// Start runs (or runs again) the Dovecot master process.
func (d *Dovecot) Start(t testing.TB) {
	t.Helper()
	if out, err := runDaemonStart(d.Dir, "dovecot", "-c", d.conf); err != nil {
		t.Fatalf("dovecot: %v\n%s", err, out)
	}
	WaitListening(t, d.IMAPSAddr(), 10*time.Second)
}

// Stop stops Dovecot and waits until its port is closed.
func (d *Dovecot) Stop(t testing.TB) {
	t.Helper()
	exec.Command("dovecot", "-c", d.conf, "stop").Run()
	testutil.WaitWithin(t, 10*time.Second, "dovecot to stop", func() bool {
		_, err := os.Stat(filepath.Join(d.Dir, "run", "master.pid"))
		return os.IsNotExist(err)
	})
}

// IMAPSAddr is the implicit-TLS listener.
func (d *Dovecot) IMAPSAddr() string { return fmt.Sprintf("127.0.0.1:%d", d.IMAPSPort) }

// Log is Dovecot's log file.
func (d *Dovecot) Log() string {
	b, _ := os.ReadFile(filepath.Join(d.Dir, "dovecot.log"))
	return string(b)
}

// Client logs in as the user over implicit TLS, as a mail client would.
func (d *Dovecot) Client(t testing.TB) *imapclient.Client {
	t.Helper()
	pem, err := os.ReadFile(d.PKI.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := imapclient.DialTLS(d.IMAPSAddr(), &imapclient.Options{TLSConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	if d.OAuth != nil {
		err = c.Authenticate(sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: d.User, Token: d.OAuth.AccessToken()}))
	} else {
		err = c.Login(d.User, d.Password).Wait()
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Append puts a message into a folder (creating it), as the provider's
// delivery would.
func (d *Dovecot) Append(t testing.TB, folder, msg string) {
	t.Helper()
	c := d.Client(t)
	defer c.Close()
	if folder != "INBOX" {
		c.Create(folder, nil).Wait() // exists already: fine
	}
	msg = strings.ReplaceAll(strings.ReplaceAll(msg, "\r\n", "\n"), "\n", "\r\n")
	cmd := c.Append(folder, int64(len(msg)), nil)
	if _, err := cmd.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Wait(); err != nil {
		t.Fatalf("append to %s: %v", folder, err)
	}
}

// Flags returns the flags of every message in a folder, by UID.
func (d *Dovecot) Flags(t testing.TB, folder string) map[imap.UID][]imap.Flag {
	t.Helper()
	c := d.Client(t)
	defer c.Close()
	if _, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	out := map[imap.UID][]imap.Flag{}
	for _, m := range msgs {
		out[m.UID] = m.Flags
	}
	return out
}

// ResetUIDValidity makes Dovecot renumber a folder, as a restored or
// migrated mailbox would: with Dovecot stopped, its UID list and indexes
// (which remember the old UIDVALIDITY too) are removed.
func (d *Dovecot) ResetUIDValidity(t testing.TB, folder string) {
	t.Helper()
	d.Stop(t)
	dir := filepath.Join(d.Dir, "mail", d.User, "Maildir")
	if folder != "INBOX" {
		dir = filepath.Join(dir, "."+folder)
	}
	if err := os.Remove(filepath.Join(dir, "dovecot-uidlist")); err != nil {
		t.Fatal(err)
	}
	idx, _ := filepath.Glob(filepath.Join(dir, "dovecot.index*"))
	for _, f := range idx {
		os.Remove(f)
	}
	d.Start(t)
}

// dovecotPassdb is the passdb and mechanisms: the user's password, or with
// oauth, access tokens that Dovecot checks at the fake's /me.
func dovecotPassdb(t testing.TB, dir, user, password string, oauth *FakeOAuth) string {
	t.Helper()
	if oauth != nil {
		ext := filepath.Join(dir, "oauth2.conf.ext")
		if err := os.WriteFile(ext, []byte("introspection_mode = auth\nintrospection_url = "+oauth.IntrospectionURL()+"\nusername_attribute = mail\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		mechs := oauth.Mechanisms
		if mechs == "" {
			mechs = "xoauth2 oauthbearer"
		}
		return fmt.Sprintf("passdb {\n  driver = oauth2\n  mechanisms = %[2]s\n  args = %[1]s\n}\nauth_mechanisms = %[2]s\n", ext, mechs)
	}
	if err := os.WriteFile(filepath.Join(dir, "users"), []byte(user+":{PLAIN}"+password+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("passdb {\n  driver = passwd-file\n  args = scheme=PLAIN %s/users\n}\nauth_mechanisms = plain login\n", dir)
}

// AccountIMAPSection is the [account.imap] section that has the relay read
// this Dovecot's mailbox over implicit TLS with the user's password (put
// into a file of its own), polling hourly: tests that need the mailbox
// watched at once say so otherwise.
func (d *Dovecot) AccountIMAPSection(t testing.TB) string {
	t.Helper()
	pwFile := filepath.Join(t.TempDir(), "imap-password")
	if err := os.WriteFile(pwFile, []byte(d.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`
[account.imap]
address = %q
tls = "implicit"
ca_file = %q
username = %q
password_file = %q
poll = "1h"
`, d.IMAPSAddr(), d.PKI.CAFile, d.User, pwFile)
}
