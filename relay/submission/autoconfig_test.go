package submission

import (
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// What Thunderbird reads from config-v1.1.xml (its readFromXML: the
// emailProvider's domains and servers, each with hostname, port, socketType,
// username and authentication).
type thunderbirdConfig struct {
	XMLName  xml.Name `xml:"clientConfig"`
	Version  string   `xml:"version,attr"`
	Provider struct {
		ID       string   `xml:"id,attr"`
		Domains  []string `xml:"domain"`
		Name     string   `xml:"displayName"`
		Incoming []tbSrv  `xml:"incomingServer"`
		Outgoing []tbSrv  `xml:"outgoingServer"`
	} `xml:"emailProvider"`
}

type tbSrv struct {
	Type       string `xml:"type,attr"`
	Hostname   string `xml:"hostname"`
	Port       int    `xml:"port"`
	SocketType string `xml:"socketType"`
	Username   string `xml:"username"`
	// Thunderbird takes the first <authentication> it supports (OAuth2
	// only for hosts it has OAuth settings for): joined here by " ".
	Auth []string `xml:"authentication"`
}

func (s tbSrv) String() string {
	return fmt.Sprintf("%s %s:%d %s user=%s auth=%s", s.Type, s.Hostname, s.Port, s.SocketType, s.Username, strings.Join(s.Auth, " "))
}

// What Outlook reads from a POX autodiscover answer.
type outlookResponse struct {
	XMLName  xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006 Autodiscover"`
	Response struct {
		XMLName xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a Response"`
		Account struct {
			AccountType string `xml:"AccountType"`
			Action      string `xml:"Action"`
			Protocol    []struct {
				Type, Server, LoginName, SSL, Encryption, AuthRequired string
				Port                                                   int
			} `xml:"Protocol"`
		} `xml:"Account"`
	}
}

func testSettings() *ClientSettings {
	return &ClientSettings{
		Domains: []string{"practice.example"}, DisplayName: "Practice mail (sealpost)",
		Hostname: "sealpost.practice.example", SubmissionPort: 587, SubmissionsPort: 465,
		IMAPHost: "imap.provider.example", IMAPPort: 993, IMAPTLS: "implicit",
		Username: func(a string) string {
			if a == "therapist@practice.example" {
				return "therapist"
			}
			return ""
		},
	}
}

func TestThunderbirdAutoconfig(t *testing.T) {
	srv := httptest.NewServer(AutoconfigHandler(testSettings))
	defer srv.Close()
	tests := []struct {
		path, wantUser string
	}{
		{"/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=therapist%40practice.example", "therapist"},
		{"/mail/config-v1.1.xml?emailaddress=therapist@practice.example", "therapist"},
		{"/mail/config-v1.1.xml?emailaddress=someone@practice.example", "%EMAILLOCALPART%"},
		{"/mail/config-v1.1.xml", "%EMAILLOCALPART%"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "xml") {
				t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			var c thunderbirdConfig
			if err := xml.NewDecoder(resp.Body).Decode(&c); err != nil {
				t.Fatal(err)
			}
			p := c.Provider
			if c.Version != "1.1" || p.ID == "" || len(p.Domains) != 1 || p.Domains[0] != "practice.example" || p.Name == "" {
				t.Errorf("provider = %+v", c)
			}
			if got, want := fmt.Sprint(p.Incoming), "[imap imap.provider.example:993 SSL user=%EMAILADDRESS% auth=OAuth2 password-cleartext]"; got != want {
				t.Errorf("incoming = %s, want %s", got, want)
			}
			want := fmt.Sprintf("[smtp sealpost.practice.example:465 SSL user=%[1]s auth=password-cleartext smtp sealpost.practice.example:587 STARTTLS user=%[1]s auth=password-cleartext]", tc.wantUser)
			if got := fmt.Sprint(p.Outgoing); got != want {
				t.Errorf("outgoing = %s, want %s", got, want)
			}
		})
	}
}

func TestOutlookAutodiscover(t *testing.T) {
	cs := testSettings()
	srv := httptest.NewServer(AutoconfigHandler(func() *ClientSettings { return cs }))
	defer srv.Close()
	req := `<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>therapist@practice.example</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>`
	for _, path := range []string{"/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"} {
		resp, err := http.Post(srv.URL+path, "text/xml", strings.NewReader(req))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var r outlookResponse
		if err := xml.Unmarshal(body, &r); err != nil {
			t.Fatalf("%s: %v\n%s", path, err, body)
		}
		a := r.Response.Account
		if a.AccountType != "email" || a.Action != "settings" || len(a.Protocol) != 2 {
			t.Fatalf("%s: account = %+v", path, a)
		}
		imap, smtp := a.Protocol[0], a.Protocol[1]
		if imap.Type != "IMAP" || imap.Server != "imap.provider.example" || imap.Port != 993 || imap.SSL != "on" || imap.LoginName != "therapist@practice.example" {
			t.Errorf("IMAP = %+v", imap)
		}
		if smtp.Type != "SMTP" || smtp.Server != "sealpost.practice.example" || smtp.Port != 465 || smtp.SSL != "on" ||
			smtp.Encryption != "" || smtp.LoginName != "therapist" || smtp.AuthRequired != "on" {
			t.Errorf("SMTP = %+v", smtp)
		}
	}
	// Only STARTTLS offered: Outlook is told to use TLS on 587.
	cs.SubmissionsPort = 0
	resp, err := http.Post(srv.URL+"/autodiscover/autodiscover.xml", "text/xml", strings.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r outlookResponse
	if err := xml.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	if p := r.Response.Account.Protocol[1]; p.Port != 587 || p.Encryption != "TLS" {
		t.Errorf("STARTTLS-only SMTP = %+v", p)
	}
	// Garbage is refused, not answered with settings.
	resp2, err := http.Post(srv.URL+"/autodiscover/autodiscover.xml", "text/xml", strings.NewReader("<not"))
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusBadRequest {
		t.Errorf("malformed request: status %d, want 400", resp2.StatusCode)
	}
}
