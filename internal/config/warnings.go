package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/fqdngate/fqdngate/internal/catalog"
	"github.com/fqdngate/fqdngate/internal/policy"
	"github.com/fqdngate/fqdngate/internal/upstream"
)

// WithStrict makes warnings errors when on is true: Load and Parse then
// fail, with errors.Is(err, ErrStrict), on any setting that would only be
// warned about (`fqdngate validate --strict`, `fqdngate run --strict`).
func WithStrict(on bool) Option {
	return func(o *options) { o.strict = on }
}

// result is what Parse returns: the configuration with its warnings, or
// every error and warning in file order.
func (c *Config) result(col *collector, o options) (*Config, error) {
	warns := col.warns
	if o.strict {
		for _, w := range warns {
			w.Strict = true
		}
	}
	if len(col.errs) > 0 || (o.strict && len(warns) > 0) {
		all := append(slices.Clone(col.errs), warns...)
		all.sortByPosition()
		return nil, all
	}
	warns.sortByPosition()
	c.Derived.Warnings = warns
	return c, nil
}

// warn finds settings that are valid but dangerous: they open more than
// the operator probably meant, or cannot work. A wildcard on a public
// suffix of the ICANN section (*.co.uk) is an error: it is every
// registered domain there, no egress policy at all.
func (c *Config) warn(col *collector, o options) {
	if len(c.Clients) == 0 {
		col.warn(path{"clients"}, "no client groups: every query is refused (a source in no group gets REFUSED); add a group with your device networks")
	}
	for gi, cl := range c.Clients {
		for ci, s := range cl.CIDRs {
			pfx, err := netip.ParsePrefix(strings.TrimSpace(s))
			if err != nil || pfx.Bits() != 0 {
				continue
			}
			family := "IPv4"
			if pfx.Addr().Is6() {
				family = "IPv6"
			}
			col.warn(path{"clients", gi, "cidrs", ci}, "%s is every %s address: any host that reaches the DNS listener may resolve the names of group %s and have them opened; list your device networks instead", pfx, family, cl.Name)
		}
	}
	c.warnLoops(col)
	c.warnCluster(col)
	c.checkSuffixWildcards(col, o)
}

// warnLoops finds an upstream that is one of fqdngate's own DNS addresses.
func (c *Config) warnLoops(col *collector) {
	var listen []netip.AddrPort
	for _, s := range c.Listen.DNS {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			listen = append(listen, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		} else {
			listen = append(listen, netip.AddrPort{})
		}
	}
	for ui, s := range c.Upstreams {
		sp, err := upstream.ParseSpec(s)
		if err != nil {
			continue
		}
		for li, l := range listen {
			switch {
			case !l.IsValid():
			case sp.Addr == l:
				col.warn(path{"upstreams", ui}, "%s is listen.dns[%d]: fqdngate would forward queries to itself (a loop)", sp.Addr, li)
			case l.Addr().IsUnspecified() && l.Port() == sp.Addr.Port() && (sp.Addr.Addr().IsLoopback() || sp.Addr.Addr().IsUnspecified()) &&
				l.Addr().Is4() == sp.Addr.Addr().Is4():
				col.warn(path{"upstreams", ui}, "%s is served by listen.dns[%d] %s (every local address): fqdngate would forward queries to itself (a loop)", sp.Addr, li, l)
			}
		}
	}
}

// suffixKind tells whether base is a public suffix, and of which section
// of the Public Suffix List.
func suffixKind(base string) (public, icann bool) {
	ps, icann := publicsuffix.PublicSuffix(base)
	// Unlisted names fall to the list's default rule, the last label,
	// which a pattern's base (two labels at least) never equals.
	return ps == base, icann
}

// wildcardAt is one wildcard on a public suffix in one group.
type wildcardAt struct {
	at      path
	pattern policy.Pattern
	from    []string
	advice  []string
}

// checkSuffixWildcards reports wildcards whose fixed part is a public
// suffix. In the private section (blob.core.windows.net,
// azurewebsites.net) anyone can own a name: a warning, once per group and
// pattern however many profiles bring it, with the catalog's advice. In
// the ICANN section (co.uk) it is every registered domain: an error.
func (c *Config) checkSuffixWildcards(col *collector, o options) {
	for gi, cl := range c.Clients {
		gp := path{"clients", gi}
		var found []*wildcardAt
		note := func(at path, pat policy.Pattern, from, advice string) {
			public, icann := suffixKind(pat.Base)
			switch {
			case pat.Kind == policy.Exact || !public:
				return
			case icann:
				col.add(at, "%s: %s is a public suffix (ICANN section of the Public Suffix List): the wildcard is every domain anyone registers there; list the domains you mean", pat, pat.Base)
				return
			}
			i := slices.IndexFunc(found, func(w *wildcardAt) bool { return w.pattern.Text == pat.Text })
			if i < 0 {
				found = append(found, &wildcardAt{at: at, pattern: pat})
				i = len(found) - 1
			}
			w := found[i]
			if !slices.Contains(w.from, from) {
				w.from = append(w.from, from)
			}
			if advice != "" && !slices.Contains(w.advice, advice) {
				w.advice = append(w.advice, advice)
			}
		}
		values := c.profileValues(cl, o)
		for pi, name := range cl.Profiles {
			for _, ep := range profileEndpoints(o.profiles, name, c.Cloud, values) {
				note(gp.with("profiles", pi), ep.Pattern, "profile "+name, ep.advice)
			}
		}
		for ri, r := range cl.Rules {
			for fi, s := range r.FQDN {
				pat, err := policy.ParsePattern(s)
				if err != nil {
					continue
				}
				note(gp.with("rules", ri, "fqdn", fi), pat, "rule "+r.Name,
					fmt.Sprintf("List the names you use instead, e.g. myname.%s.", pat.Base))
			}
		}
		for _, w := range found {
			which := ""
			if w.pattern.Kind == policy.InLabel {
				which = fmt.Sprintf(" that match %s*%s", w.pattern.Prefix, w.pattern.Suffix)
			}
			msg := fmt.Sprintf("%s (%s) opens any of the names anyone can register under %s (a public suffix)%s: strangers' sites as well as yours",
				w.pattern, sources(w.from), w.pattern.Base, which)
			if len(w.advice) > 0 {
				msg += ". " + strings.Join(w.advice, " ")
			}
			col.warn(w.at, "%s", msg)
		}
	}
}

// profileValues are a group's placeholder values, as checkParams makes
// them, leaving out what it rejected.
func (c *Config) profileValues(cl Client, o options) map[string]string {
	out := map[string]string{}
	for _, m := range []map[string]string{c.Params, cl.Params} {
		for k, v := range m {
			if k != "region" && o.profiles.CheckParam(k, v) == nil {
				out[k] = v
			}
		}
	}
	if c.Derived.Region != "" {
		out["region"] = c.Derived.Region
	}
	return out
}

type endpoint struct {
	Pattern policy.Pattern
	advice  string
}

// profileEndpoints lists a profile's patterns; the built-in catalog also
// says how to narrow its wildcards. A profile that does not resolve was
// reported by validation.
func profileEndpoints(src ProfileSource, name, cloud string, values map[string]string) []endpoint {
	var out []endpoint
	if cat, ok := src.(*catalog.Catalog); ok {
		eps, err := cat.Resolve(name, cloud, values)
		if err != nil {
			return nil
		}
		for _, ep := range eps {
			out = append(out, endpoint{Pattern: ep.Pattern, advice: ep.Entry.Advice})
		}
		return out
	}
	rules, err := src.ProfileRules(name, cloud, values)
	if err != nil {
		return nil
	}
	for _, r := range rules {
		for _, p := range r.Patterns {
			out = append(out, endpoint{Pattern: p})
		}
	}
	return out
}

// sources reads "profiles a, b, rule c".
func sources(from []string) string {
	var profiles, rules []string
	for _, f := range from {
		if p, ok := strings.CutPrefix(f, "profile "); ok {
			profiles = append(profiles, p)
		} else {
			rules = append(rules, strings.TrimPrefix(f, "rule "))
		}
	}
	var parts []string
	for _, g := range []struct {
		one, many string
		names     []string
	}{{"profile ", "profiles ", profiles}, {"rule ", "rules ", rules}} {
		switch len(g.names) {
		case 0:
		case 1:
			parts = append(parts, g.one+g.names[0])
		default:
			parts = append(parts, g.many+strings.Join(g.names, ", "))
		}
	}
	return strings.Join(parts, "; ")
}
