package gateway

import (
	"net/netip"

	"github.com/fqdngate/fqdngate/internal/config"
	"github.com/fqdngate/fqdngate/internal/enforce"
)

// staticSpec turns the configuration's static rules into the table's: each
// with its group's networks, less the networks of other groups nested in
// them (a client there is that group's, and gets that group's rules only).
func staticSpec(c *config.Config) []enforce.StaticRule {
	if len(c.Derived.Static) == 0 {
		return nil
	}
	groups := c.Derived.Policy.Groups()
	var out []enforce.StaticRule
	for _, s := range c.Derived.Static {
		r := enforce.StaticRule{Name: s.Group + "/" + s.Rule, Dests: s.Prefixes, Ports: s.Ports}
		for _, g := range groups {
			if g.Name == s.Group {
				r.Clients = g.Prefixes
			}
		}
		for _, g := range groups {
			if g.Name == s.Group {
				continue
			}
			for _, q := range g.Prefixes {
				if nestedIn(q, r.Clients) {
					r.Except = append(r.Except, q)
				}
			}
		}
		out = append(out, r)
	}
	return out
}

// nestedIn reports whether q lies inside one of ps and is more specific.
func nestedIn(q netip.Prefix, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Bits() < q.Bits() && p.Contains(q.Addr()) {
			return true
		}
	}
	return false
}
