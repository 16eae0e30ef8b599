package config

import (
	"fmt"
	"strings"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/rules"
)

// DefaultCrisis is [sealed] crisis when none is set: the US lines, as
// config.example.toml's autoreply has them.
const DefaultCrisis = "If you are in crisis, call or text 988 (Suicide & Crisis Lifeline) or text HOME to 741741 (Crisis Text Line). In an emergency call 911."

// defaultSealedText is [sealed] text when none is set, for a practice name.
func defaultSealedText(practice string) string {
	return fmt.Sprintf(`This message from %s is in the attached file message.pdf, locked with the passphrase you agreed with us at intake. Open message.pdf and type the passphrase when you are asked for it: on a phone, tap the attachment; on a computer, open it with a PDF reader or a web browser.

If you no longer have the passphrase, or it does not open the file, call us; please do not send it by email.

To answer, reply to this email as usual. Your reply is ordinary email, not locked: keep personal details for our sessions or a call.`, practice)
}

// validateSealed fills in [sealed]'s defaults and checks it as the policy will.
func (c *Config) validateSealed(bad reporter) {
	s := &c.Sealed
	if s.PracticeName == "" {
		s.PracticeName = c.defaultPracticeName()
	}
	if s.Subject == "" {
		s.Subject = "Secure message from " + s.PracticeName
	}
	if strings.TrimSpace(s.Text) == "" && c.lines["sealed.text"] == 0 {
		s.Text = defaultSealedText(s.PracticeName)
	}
	if s.Crisis == "" && c.lines["sealed.crisis"] == 0 {
		s.Crisis = DefaultCrisis
	}
	if s.MaxBytes == 0 && c.lines["sealed.max_bytes"] == 0 {
		s.MaxBytes = c.SMTP.MaxMessageBytes
	}
	for _, p := range rules.CheckSealed(s.Settings()) {
		bad("sealed."+p.Key, "%s", p.Msg)
	}
}

// defaultPracticeName is the first internal domain, else the domain of the
// first account's first address, else smtp.hostname.
func (c *Config) defaultPracticeName() string {
	for _, d := range c.Policy.InternalDomains {
		if d = strings.TrimSpace(d); d != "" {
			return d
		}
	}
	for _, a := range c.Accounts {
		for _, x := range a.Addresses {
			if n, err := addr.Normalize(x); err == nil {
				return addr.DomainOf(n)
			}
		}
	}
	return c.SMTP.Hostname
}
