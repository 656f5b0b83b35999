package config

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/fqdngate/fqdngate/internal/upstream"
)

// WriteEffective prints the configuration as fqdngate will run it:
// defaults filled in, profiles expanded, every rule with its source.
func (c *Config) WriteEffective(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }
	e := c.Enforcer
	p("mode:\t%s\n", c.Mode)
	p("dns:\t%s (udp and tcp)\n", joinStringers(c.Derived.DNS))
	p("dns/tcp:\t%d connections, %d per client; idle timeout %s, a query within %s\n",
		c.Listen.TCPMaxConns, c.Listen.TCPMaxConnsPerClient, c.Listen.TCPIdleTimeout, c.Listen.TCPReadTimeout)
	p("api:\t%s\n", c.Derived.API)
	p("api security:\t%s\n", c.API.describe(c.Derived.API.Addr().IsLoopback()))
	p("upstreams:\t%s (timeout %s per attempt, %s per query; 0x20 case randomization %s)\n", joinStringers(c.Derived.Upstreams),
		c.UpstreamTimeout, upstream.DefaultQueryTimeout, onOff(c.UpstreamCaseRandomization))
	p("upstream CAs:\t%s\n", caSource(c.UpstreamCAFile))
	if e.Backend == "none" {
		p("enforcer:\tnone (names are resolved and recorded, nothing is installed)\n")
	} else {
		p("enforcer:\tnftables table inet %s, hook %s, scope %s, expired elements collected every %s\n", e.Table, e.Hook, e.Scope, e.GCInterval)
	}
	p("lifetime:\tmax(ttl, %s) + %s, ttl capped at %s; rule ack within %s\n", e.MinTTL, e.Grace, e.MaxTTL, e.Hold)
	p("caps:\t%d addresses per name, %d ledger entries per client, %d in all\n", e.MaxAddrsPerName, e.MaxEntriesPerClient, e.MaxEntries)
	p("static rules:\tat most %d addresses each (IPv6 counted in /64s)\n", e.StaticMaxAddresses)
	p("verify:\t%s\n", describeVerify(c))
	p("denied names:\t%s\n", strings.ToUpper(c.DenyResponse))
	p("serve stale:\t%s\n", serveStale(c))
	p("cache:\t%s\n", cacheSize(c.CacheSize))
	p("in flight:\tat most %d queries at once (max_inflight); beyond: SERVFAIL at once\n", c.MaxInflight)
	p("state:\t%s\n", stateDir(c.StateDir))
	p("log:\t%s, level %s\n", c.Log.Format, c.Log.Level)
	if e.Backend != "none" {
		p("kernel:\tdrops logged to nflog group %d; fqdngate's own upstream traffic marked 0x%x\n", e.NFLogGroup, e.Mark)
	}
	p("answers:\t%s\n", answerDefaults)
	if c.Derived.Region != "" {
		p("region:\t%s\n", c.Derived.Region)
	}
	p("cloud:\t%s\n", c.Cloud)
	if len(c.Params) > 0 {
		p("params:\t%s\n", params(c.Params))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, g := range c.Derived.Policy.Groups() {
		fmt.Fprintf(w, "\nclient group %s: %s\n", g.Name, joinStringers(g.Prefixes))
		fmt.Fprintf(w, "  per client: %s\n", c.clientLimits(g.Name))
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
		writeAnswerRules(w, g.Rules)
		writeStatic(w, g.Name, c.Derived.Static)
	}
	c.writeFeeds(w)
	c.writeCluster(w)
	writeWarnings(w, c.Derived.Warnings)
	return nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func caSource(file string) string {
	if file == "" {
		return "system roots (tls:// upstreams)"
	}
	return file + " (tls:// upstreams)"
}

// clientLimits describes the per-client limits of group name.
func (c *Config) clientLimits(name string) string {
	for _, cl := range c.Clients {
		if cl.Name != name {
			continue
		}
		qps, inflight := "no query rate limit", "no in-flight limit"
		if cl.MaxQPS > 0 {
			qps = fmt.Sprintf("max_qps %d (a second's worth at once)", cl.MaxQPS)
		}
		if cl.MaxInflight > 0 {
			inflight = fmt.Sprintf("max_inflight %d", cl.MaxInflight)
		}
		return qps + ", " + inflight + "; beyond: REFUSED, rate limited"
	}
	return "no limits"
}

func joinStringers[T fmt.Stringer](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = x.String()
	}
	return strings.Join(s, ", ")
}
