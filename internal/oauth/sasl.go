package oauth

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/emersion/go-sasl"
)

// SASL returns a login for the provider as user, for the relay and the
// IMAP reader: every call makes a client with a fresh access token.
func (g *Grant) SASL(user string) func(ctx context.Context) (sasl.Client, error) {
	return func(ctx context.Context) (sasl.Client, error) {
		tok, err := g.accessToken(ctx)
		if err != nil {
			return nil, err
		}
		return &tokenClient{user: user, token: tok, refused: func() { g.refused(tok) }}, nil
	}
}

// tokenClient logs in with an access token: SASL XOAUTH2 as Microsoft and
// Google define it (Microsoft 365 offers nothing else), or OAUTHBEARER
// (RFC 7628) for a server that offers only that.
type tokenClient struct {
	user, token string
	mech        string // "" until ChooseMechanism: XOAUTH2
	refused     func()
}

// ChooseMechanism is called by relay and IMAP reader with the mechanisms
// the server offers, before Start.
func (c *tokenClient) ChooseMechanism(offered []string) {
	c.mech = ""
	for _, m := range offered {
		switch strings.ToUpper(m) {
		case "XOAUTH2":
			c.mech = "XOAUTH2"
			return
		case sasl.OAuthBearer:
			c.mech = sasl.OAuthBearer
		}
	}
}

func (c *tokenClient) Start() (string, []byte, error) {
	if c.mech == sasl.OAuthBearer {
		return sasl.OAuthBearer, []byte("n,a=" + c.user + ",\x01auth=Bearer " + c.token + "\x01\x01"), nil
	}
	return "XOAUTH2", []byte("user=" + c.user + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}

// Next gets the server's only challenge: the token was refused, and why (a
// JSON status, in both mechanisms). The exchange is cancelled with an error
// that says so: the empty response the mechanisms expect reaches IMAP
// servers as "=" through go-imap, which Dovecot answers with a confusing
// BAD about base64.
func (c *tokenClient) Next(challenge []byte) ([]byte, error) {
	if c.refused != nil {
		c.refused()
	}
	var status sasl.OAuthBearerError
	json.Unmarshal(challenge, &status)
	why := "status " + status.Status
	if status.Status == "" {
		why = "no reason given"
	}
	if status.Scope != "" {
		why += ", scope " + status.Scope
	}
	return nil, fmt.Errorf("the provider refused the OAuth 2.0 access token for %s (%s): is SMTP AUTH or IMAP allowed for the mailbox, and does the app registration have the permission?", c.user, why)
}
