package main

import (
	"context"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/oauth"
)

func init() {
	register(&command{name: "oauth2 login", args: "--account NAME [--device | --browser [--listen ADDR]]",
		summary: "sign in at the provider once (OAuth 2.0) so that sealpost may send and read the account's mail", run: runOAuth2Login})
}

// oauthProvider is [oauth2], with the client secret read from its file.
func oauthProvider(cfg *config.Config) (*oauth.Provider, error) {
	s := cfg.OAuth2.Settings()
	if f := cfg.OAuth2.ClientSecretFile; f != "" {
		secret, err := config.ReadSecret(f)
		if err != nil {
			return nil, fmt.Errorf("oauth2.client_secret_file: %w", err)
		}
		s.ClientSecret = secret
	}
	return oauth.NewProvider(s, cfg.DataDir), nil
}

// oauthGrant is the account's grant among grants.
func oauthGrant(cfg *config.Config, grants *oauth.Grants, account string) (*oauth.Grant, error) {
	p, err := oauthProvider(cfg)
	if err != nil {
		return nil, err
	}
	return grants.For(p, account)
}

func runOAuth2Login(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	account := fs.String("account", "", "the [[account]] username to sign in for")
	device := fs.Bool("device", false, "sign in with a code on any device (Microsoft; the default where the provider offers it)")
	browser := fs.Bool("browser", false, "sign in in a browser on this machine (Google; any provider)")
	listen := fs.String("listen", "127.0.0.1:0", "with --browser: where the browser is sent back to (forward this port to sign in from elsewhere)")
	_, cfg, err := c.start(fs, args, argCount{0, 0, "needs --account NAME and no arguments"}, func() error {
		switch {
		case *account == "":
			return usagef("needs --account NAME and no arguments")
		case *device && *browser:
			return usagef("--device and --browser exclude each other")
		}
		return nil
	})
	if err != nil {
		return err
	}
	var acct *config.AccountConfig
	for i := range cfg.Accounts {
		if cfg.Accounts[i].Username == *account {
			acct = &cfg.Accounts[i]
		}
	}
	if acct == nil {
		return fmt.Errorf("no [[account]] with username %q in %s", *account, cfg.Path)
	}
	if acct.UpstreamAuth != "oauth2" {
		return fmt.Errorf("account %q logs in with a password: set upstream_auth = \"oauth2\" in its [[account]] first", *account)
	}
	provider, err := oauthProvider(cfg)
	if err != nil {
		return err
	}
	user := acct.UpstreamUsername
	path, err := provider.Login(ctx, acct.Username, user, oauth.LoginOptions{Device: *device, Browser: *browser, Listen: *listen,
		Prompt: oauth.Prompt{
			DeviceCode: func(url, code string, expires time.Time) {
				until := ""
				if !expires.IsZero() {
					until = " before " + expires.Local().Format("15:04")
				}
				fmt.Fprintf(c.stdout, "To let sealpost send and read mail as %s: on any device, open\n  %s\nand enter the code %s%s, signing in as %s. Waiting...\n", user, url, code, until, user)
			},
			BrowserURL: func(url string, port int) {
				fmt.Fprintf(c.stdout, "To let sealpost send and read mail as %s, open this address in a browser on this machine and sign in as %s:\n  %s\n"+
					"(On a server without a browser, forward the port first: ssh -L %d:127.0.0.1:%d THIS-SERVER, then open the address on your computer.)\nWaiting...\n",
					user, user, url, port, port)
			},
		}})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Signed in. The grant is in %s (keep it secret: it lets sealpost send and read %s's mail).\n"+
		"A running sealpost uses it at its next connection; sealpost check logs in with it now.\n", path, user)
	return nil
}
