package config

import (
	"fmt"
	"net"

	"github.com/sealpost/sealpost/internal/password"
)

// ConsoleConfig is [console]: the practice console, a web page over HTTPS
// (with the submission certificate) for admins, therapists and auditors.
type ConsoleConfig struct {
	// Listen is host:port; "" turns the console off. Loopback, or an
	// address on the practice's LAN: never one reachable from the internet.
	Listen string `toml:"listen"`
	// RequireTOTPForAdmins makes every admin set up login codes (TOTP)
	// before the console opens anything else to them; others may choose.
	RequireTOTPForAdmins bool                 `toml:"require_totp_for_admins"`
	Admins               []ConsoleAdminConfig `toml:"admin"`
}

// ConsoleAdminConfig is one [[console.admin]]: a login with the admin's
// role (consents, keys, the queue). Therapists log in with their
// [[account]], auditors with their [[archive.viewer]].
type ConsoleAdminConfig struct {
	Username     string `toml:"username"`
	PasswordHash string `toml:"password_hash"` // from sealpost passwd
}

// validateConsole checks [console]: its address and admins, and that no
// two logins of the console share a username, so a name says which role
// logs in.
func (c *Config) validateConsole(bad reporter) {
	if v := c.Console.Listen; v != "" {
		if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
			bad("console.listen", "must be host:port, e.g. 127.0.0.1:8443 (%v)", err)
		}
	}
	taken := map[string]string{}
	for _, a := range c.Accounts {
		taken[a.Username] = "an [[account]]"
	}
	for i, v := range c.Archive.Viewers {
		if _, dup := taken[v.Username]; dup && c.Console.Listen != "" {
			bad(fmt.Sprintf("archive.viewer[%d].username", i), "%q is also %s: the console could not tell which role logs in; give the viewer another name", v.Username, taken[v.Username])
		}
		taken[v.Username] = "an [[archive.viewer]]"
	}
	for i, a := range c.Console.Admins {
		k := fmt.Sprintf("console.admin[%d]", i)
		if a.Username == "" {
			bad(k+".username", "must be set")
		} else if what, dup := taken[a.Username]; dup {
			bad(k+".username", "%q is also %s: give every login its own name", a.Username, what)
		}
		taken[a.Username] = "a [[console.admin]]"
		if err := password.CheckHash(a.PasswordHash); err != nil {
			bad(k+".password_hash", "%v (make one with: sealpost passwd)", err)
		}
	}
}
