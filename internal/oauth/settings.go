package oauth

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/endpoints"
)

// Settings are the practice's app registration at its provider ([oauth2]).
type Settings struct {
	Provider      string // microsoft, google or custom
	ClientID      string
	ClientSecret  string // Google's desktop clients have one; public clients none
	Tenant        string // microsoft: the directory (tenant) ID or domain
	AuthURL       string // custom, or to override a provider's
	TokenURL      string
	DeviceAuthURL string
	Scopes        []string // default: the provider's for SMTP and IMAP
}

// The permissions sealpost asks for: sending and reading mail, and a refresh
// token (offline_access) so that it can go on doing so without the admin.
var (
	microsoftScopes = []string{"https://outlook.office.com/SMTP.Send", "https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access"}
	googleScopes    = []string{"https://mail.google.com/"}
)

// Problem is one thing wrong with Settings; Key is the setting's name in
// [oauth2] ("client_id").
type Problem struct {
	Key string
	Msg string
}

// Check returns every problem in the settings, for the configuration to
// name with its key and line.
func (s Settings) Check() []Problem {
	var problems []Problem
	bad := func(key, format string, args ...any) {
		problems = append(problems, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	switch s.Provider {
	case "microsoft", "google", "custom":
	case "":
		bad("provider", "an account has upstream_auth = \"oauth2\": set provider to microsoft, google or custom")
		return problems
	default:
		bad("provider", "must be microsoft, google or custom, not %q", s.Provider)
		return problems
	}
	if s.ClientID == "" {
		bad("client_id", "must be set: the application (client) ID of the practice's app registration at the provider")
	}
	switch {
	case s.Provider == "microsoft" && s.Tenant == "":
		// An app registered for one organisation is refused at the
		// common endpoints.
		bad("tenant", "must be set for microsoft: the directory (tenant) ID, or the practice's Microsoft 365 domain")
	case s.Provider != "microsoft" && s.Tenant != "":
		bad("tenant", "is for provider = \"microsoft\" only")
	}
	if s.Provider == "custom" {
		if s.TokenURL == "" || (s.AuthURL == "" && s.DeviceAuthURL == "") {
			bad("token_url", "provider = \"custom\" needs token_url and auth_url or device_auth_url")
		}
		if len(s.Scopes) == 0 {
			bad("scopes", "provider = \"custom\" needs the scopes that allow SMTP and IMAP")
		}
	}
	for _, u := range []struct{ key, v string }{{"auth_url", s.AuthURL}, {"token_url", s.TokenURL}, {"device_auth_url", s.DeviceAuthURL}} {
		if u.v != "" {
			if err := checkURL(u.v); err != nil {
				bad(u.key, "%v", err)
			}
		}
	}
	return problems
}

// checkURL insists on HTTPS: tokens are credentials. Plain HTTP is
// allowed to this machine only, where nothing crosses a network.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if ip := net.ParseIP(u.Hostname()); (ip != nil && ip.IsLoopback()) || u.Hostname() == "localhost" {
			return nil
		}
	}
	return fmt.Errorf("%q: must be https:// (tokens never travel in clear)", s)
}

// Provider is the provider's token service as the settings describe it,
// and the folder where the accounts' grants are kept.
type Provider struct {
	name    string
	conf    *oauth2.Config
	dataDir string
	// http bounds every request to the token endpoint.
	http *http.Client
}

// NewProvider returns the provider for settings that passed Check; grants
// are kept in dataDir/oauth2.
func NewProvider(s Settings, dataDir string) *Provider {
	conf := &oauth2.Config{ClientID: s.ClientID, ClientSecret: s.ClientSecret, Scopes: s.Scopes}
	switch s.Provider {
	case "microsoft":
		conf.Endpoint = endpoints.AzureAD(s.Tenant)
		conf.Endpoint.AuthStyle = oauth2.AuthStyleInParams // a public client: no secret to send
		if len(conf.Scopes) == 0 {
			conf.Scopes = microsoftScopes
		}
	case "google":
		conf.Endpoint = endpoints.Google
		conf.Endpoint.AuthStyle = oauth2.AuthStyleInParams
		// Google's device flow does not grant mail scopes: the browser it is.
		conf.Endpoint.DeviceAuthURL = ""
		if len(conf.Scopes) == 0 {
			conf.Scopes = googleScopes
		}
	}
	if s.AuthURL != "" {
		conf.Endpoint.AuthURL = s.AuthURL
	}
	if s.TokenURL != "" {
		conf.Endpoint.TokenURL = s.TokenURL
	}
	if s.DeviceAuthURL != "" {
		conf.Endpoint.DeviceAuthURL = s.DeviceAuthURL
	}
	return &Provider{name: s.Provider, conf: conf, dataDir: dataDir, http: &http.Client{Timeout: 30 * time.Second}}
}

// GrantPath is the file below data_dir that holds an account's grant.
func GrantPath(dataDir, account string) string {
	return filepath.Join(dataDir, "oauth2", account+".json")
}
