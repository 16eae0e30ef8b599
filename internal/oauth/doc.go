// Package oauth logs sealpost in to providers that take no passwords over
// SMTP and IMAP (Microsoft 365) or only app passwords (Google): the admin
// signs in once (Provider.Login: a device code, or a browser), the grant (a
// refresh token) is kept below data_dir/oauth2, and every connection to the
// provider logs in by XOAUTH2 or OAUTHBEARER with an access token renewed
// from it (Grants, Grant.SASL).
//
// It owns the grant files and the token endpoint; it reads no
// configuration file and opens no connection to the mail servers (the relay
// and archive/ingest do, with the SASL client it gives them).
package oauth
