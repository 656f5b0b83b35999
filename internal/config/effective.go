package config

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteEffective prints the configuration as fqdngate will run it:
// defaults filled in, profiles expanded, every rule with its source.
func (c *Config) WriteEffective(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }
	e := c.Enforcer
	p("mode:\t%s\n", c.Mode)
	p("dns:\t%s (udp and tcp)\n", joinStringers(c.Derived.DNS))
	p("api:\t%s\n", c.Derived.API)
	p("upstreams:\t%s (timeout %s)\n", joinStringers(c.Derived.Upstreams), c.UpstreamTimeout)
	if e.Backend == "none" {
		p("enforcer:\tnone (names are resolved and recorded, nothing is installed)\n")
	} else {
		p("enforcer:\tnftables table inet %s, hook %s, scope %s, expired elements collected every %s\n", e.Table, e.Hook, e.Scope, e.GCInterval)
	}
	p("lifetime:\tmax(ttl, %s) + %s, ttl capped at %s; rule ack within %s\n", e.MinTTL, e.Grace, e.MaxTTL, e.Hold)
	p("caps:\t%d addresses per name, %d ledger entries\n", e.MaxAddrsPerName, e.MaxEntries)
	p("denied names:\t%s\n", strings.ToUpper(c.DenyResponse))
	if c.Derived.Region != "" {
		p("region:\t%s\n", c.Derived.Region)
	}
	p("cloud:\t%s\n", c.Cloud)
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, g := range c.Derived.Policy.Groups() {
		fmt.Fprintf(w, "\nclient group %s: %s\n", g.Name, joinStringers(g.Prefixes))
		if len(g.Rules) == 0 {
			fmt.Fprintln(w, "  (no rules: every name is denied)")
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  RULE\tSOURCE\tPATTERN\tPORTS")
		for _, r := range g.Rules {
			ports := make([]string, len(r.Ports))
			for i, pr := range r.Ports {
				ports[i] = pr.String()
			}
			for _, pat := range r.Patterns {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", r.Name, r.Source, pat, strings.Join(ports, " "))
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	c.writeFeeds(w)
	return nil
}

func joinStringers[T fmt.Stringer](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = x.String()
	}
	return strings.Join(s, ", ")
}
