package config

import (
	"errors"
	"net/netip"
)

// TrustedPrefixes are smtp.trusted_networks as prefixes.
func (c SMTPConfig) TrustedPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range c.TrustedNetworks {
		if p, err := parseNetwork(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// parseNetwork takes a prefix or a lone address (as its /32 or /128).
func parseNetwork(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	if p.Bits() <= 0 {
		return netip.Prefix{}, errors.New("would trust every address")
	}
	return p.Masked(), nil
}
