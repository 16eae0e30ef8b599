package submission

import (
	"encoding/xml"
	"io"
	"net/http"
	"strings"
)

// ClientSettings is what a mail client needs to set itself up: outgoing
// mail to sealpost, incoming mail from the provider.
type ClientSettings struct {
	Domains     []string // the practice's mail domains
	DisplayName string
	// Outgoing: sealpost. SubmissionsPort (implicit TLS) is preferred when
	// set; SubmissionPort is STARTTLS.
	Hostname        string
	SubmissionPort  int
	SubmissionsPort int
	// Incoming: the provider's IMAP server; empty leaves it out.
	IMAPHost string
	IMAPPort int
	IMAPTLS  string // "implicit" or "starttls"
	// Username returns the sealpost login for an address, or "" when the
	// address is not an account's (the client is then told to use its local
	// part).
	Username func(address string) string
}

// AutoconfigHandler serves Thunderbird's autoconfig
// (/.well-known/autoconfig/mail/config-v1.1.xml, /mail/config-v1.1.xml) and
// Outlook's POX autodiscover (/autodiscover/autodiscover.xml).
// settings is read at each request, so a reload takes effect at once.
func AutoconfigHandler(settings func() *ClientSettings) http.Handler {
	mux := http.NewServeMux()
	tb := func(w http.ResponseWriter, r *http.Request) {
		cs := settings()
		address := r.URL.Query().Get("emailaddress")
		w.Header().Set("Content-Type", "application/xml; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, xml.Header)
		enc := xml.NewEncoder(w)
		enc.Indent("", "  ")
		enc.Encode(cs.thunderbird(address))
	}
	mux.HandleFunc("GET /.well-known/autoconfig/mail/config-v1.1.xml", tb)
	mux.HandleFunc("GET /mail/config-v1.1.xml", tb)
	ad := func(w http.ResponseWriter, r *http.Request) {
		cs := settings()
		var req struct {
			Request struct {
				EMailAddress string `xml:"EMailAddress"`
			} `xml:"Request"`
		}
		if r.Method == http.MethodPost {
			if err := xml.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
				http.Error(w, "the request is not autodiscover XML", http.StatusBadRequest)
				return
			}
		}
		w.Header().Set("Content-Type", "application/xml; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, xml.Header)
		enc := xml.NewEncoder(w)
		enc.Indent("", "  ")
		enc.Encode(cs.autodiscover(strings.TrimSpace(req.Request.EMailAddress)))
	}
	for _, p := range []string{"/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"} {
		mux.HandleFunc("POST "+p, ad)
		mux.HandleFunc("GET "+p, ad)
	}
	return mux
}

func (cs ClientSettings) login(address string) string {
	if address != "" && cs.Username != nil {
		if u := cs.Username(address); u != "" {
			return u
		}
	}
	return ""
}

// The outgoing server a client should use: implicit TLS when offered.
func (cs ClientSettings) outgoing() (port int, implicit bool) {
	if cs.SubmissionsPort != 0 {
		return cs.SubmissionsPort, true
	}
	return cs.SubmissionPort, false
}

type tbConfig struct {
	XMLName  xml.Name   `xml:"clientConfig"`
	Version  string     `xml:"version,attr"`
	Provider tbProvider `xml:"emailProvider"`
}

type tbProvider struct {
	ID        string     `xml:"id,attr"`
	Domains   []string   `xml:"domain"`
	Name      string     `xml:"displayName"`
	ShortName string     `xml:"displayShortName"`
	Incoming  []tbServer `xml:"incomingServer"`
	Outgoing  []tbServer `xml:"outgoingServer"`
}

type tbServer struct {
	Type       string   `xml:"type,attr"`
	Hostname   string   `xml:"hostname"`
	Port       int      `xml:"port"`
	SocketType string   `xml:"socketType"`
	Auth       []string `xml:"authentication"` // the first the client supports is used
	Username   string   `xml:"username"`
}

func (cs ClientSettings) thunderbird(address string) tbConfig {
	id := cs.Hostname
	if len(cs.Domains) > 0 {
		id = cs.Domains[0]
	}
	p := tbProvider{ID: id, Domains: cs.Domains, Name: cs.DisplayName, ShortName: cs.DisplayName}
	if cs.IMAPHost != "" {
		st := "SSL"
		if cs.IMAPTLS == "starttls" {
			st = "STARTTLS"
		}
		// OAuth2 first: Thunderbird skips it for hosts it has no OAuth
		// settings for, and uses it for Microsoft 365 and Google, which
		// refuse (Microsoft) or discourage (Google) passwords over IMAP.
		p.Incoming = append(p.Incoming, tbServer{Type: "imap", Hostname: cs.IMAPHost, Port: cs.IMAPPort,
			SocketType: st, Auth: []string{"OAuth2", "password-cleartext"}, Username: "%EMAILADDRESS%"})
	}
	user := cs.login(address)
	if user == "" {
		user = "%EMAILLOCALPART%"
	}
	if cs.SubmissionsPort != 0 {
		p.Outgoing = append(p.Outgoing, tbServer{Type: "smtp", Hostname: cs.Hostname, Port: cs.SubmissionsPort,
			SocketType: "SSL", Auth: []string{"password-cleartext"}, Username: user})
	}
	if cs.SubmissionPort != 0 {
		p.Outgoing = append(p.Outgoing, tbServer{Type: "smtp", Hostname: cs.Hostname, Port: cs.SubmissionPort,
			SocketType: "STARTTLS", Auth: []string{"password-cleartext"}, Username: user})
	}
	return tbConfig{Version: "1.1", Provider: p}
}

type adResponse struct {
	XMLName  xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006 Autodiscover"`
	Response struct {
		XMLName xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a Response"`
		Account struct {
			AccountType string       `xml:"AccountType"`
			Action      string       `xml:"Action"`
			Protocols   []adProtocol `xml:"Protocol"`
		} `xml:"Account"`
	}
}

type adProtocol struct {
	Type           string `xml:"Type"`
	Server         string `xml:"Server"`
	Port           int    `xml:"Port"`
	LoginName      string `xml:"LoginName,omitempty"`
	DomainRequired string `xml:"DomainRequired"`
	SPA            string `xml:"SPA"`
	SSL            string `xml:"SSL"`
	Encryption     string `xml:"Encryption,omitempty"`
	AuthRequired   string `xml:"AuthRequired"`
	UsePOPAuth     string `xml:"UsePOPAuth,omitempty"`
	SMTPLast       string `xml:"SMTPLast,omitempty"`
}

func (cs ClientSettings) autodiscover(address string) adResponse {
	var r adResponse
	r.Response.Account.AccountType = "email"
	r.Response.Account.Action = "settings"
	if cs.IMAPHost != "" {
		p := adProtocol{Type: "IMAP", Server: cs.IMAPHost, Port: cs.IMAPPort, LoginName: address,
			DomainRequired: "off", SPA: "off", SSL: "on", AuthRequired: "on"}
		if cs.IMAPTLS == "starttls" {
			p.SSL, p.Encryption = "on", "TLS"
		}
		r.Response.Account.Protocols = append(r.Response.Account.Protocols, p)
	}
	port, implicit := cs.outgoing()
	p := adProtocol{Type: "SMTP", Server: cs.Hostname, Port: port, LoginName: cs.login(address),
		DomainRequired: "off", SPA: "off", SSL: "on", AuthRequired: "on", UsePOPAuth: "off", SMTPLast: "off"}
	if !implicit {
		p.Encryption = "TLS"
	}
	r.Response.Account.Protocols = append(r.Response.Account.Protocols, p)
	return r
}
