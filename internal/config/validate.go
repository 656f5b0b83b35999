package config

import (
	"crypto/x509"
	"log/slog"
	"maps"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/fqdngate/fqdngate/internal/catalog"
	"github.com/fqdngate/fqdngate/internal/policy"
	"github.com/fqdngate/fqdngate/internal/upstream"
)

// ProfileSource provides the rules of a named profile. The built-in
// catalog is the default; tests may give another.
type ProfileSource interface {
	// ProfileRules resolves a profile for a cloud, filling placeholders
	// from values ("region" is the normalised region).
	ProfileRules(name, cloud string, values map[string]string) ([]*policy.Rule, error)
	// CheckParam validates one `params:` entry.
	CheckParam(name, value string) error
}

type options struct {
	profiles ProfileSource
	strict   bool // warnings are errors (warnings.go)
}

// Option changes how a file is loaded.
type Option func(*options)

// WithProfiles resolves `profiles:` entries through src instead of the
// built-in catalog.
func WithProfiles(src ProfileSource) Option {
	return func(o *options) { o.profiles = src }
}

// Derived holds values computed from the file during validation; it is
// valid whenever Load or Parse returned no error.
type Derived struct {
	DNS       []netip.AddrPort
	API       netip.AddrPort
	Upstreams []upstream.Spec
	Region    string
	Policy    *policy.Policy
	LogLevel  slog.Level

	// UpstreamRootCAs verify tls:// upstreams; nil means the system roots.
	UpstreamRootCAs *x509.CertPool
	Static          []*StaticRule   // rules' static parts (static.go)
	Warnings        Errors          // dangerous but valid settings (warnings.go)
	Cluster         *DerivedCluster // nil: no cluster (cluster.go)
}

var (
	tableName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)
	groupName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
)

func oneOf(col *collector, p path, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	col.add(p, "%q is not one of %s", v, strings.Join(allowed, ", "))
}

func (c *Config) validate(col *collector, o options) {
	if c.Mode == "" {
		col.add(path{"mode"}, "required: observe or enforce")
	} else {
		oneOf(col, path{"mode"}, c.Mode, ModeObserve, ModeEnforce)
	}
	c.Derived.DNS = parseAddrPorts(col, path{"listen", "dns"}, c.Listen.DNS, 0)
	if ap, err := netip.ParseAddrPort(c.Listen.API); err != nil || ap.Port() == 0 {
		col.add(path{"listen", "api"}, "%q is not IP:port", c.Listen.API)
	} else {
		c.Derived.API = ap
	}
	c.Listen.validateTCP(col, path{"listen"})
	if len(c.Upstreams) == 0 {
		col.add(path{"upstreams"}, "required: at least one resolver address, e.g. 198.51.100.53")
	}
	c.Derived.Upstreams = parseUpstreams(col, path{"upstreams"}, c.Upstreams)
	if c.UpstreamCAFile != "" {
		if pool, err := upstream.LoadCAFile(c.UpstreamCAFile); err != nil {
			col.add(path{"upstream_ca_file"}, "%v", err)
		} else {
			c.Derived.UpstreamRootCAs = pool
		}
	}
	if c.UpstreamTimeout < 0 || c.UpstreamTimeout > 30*time.Second {
		col.add(path{"upstream_timeout"}, "%s is outside 1ms..30s", c.UpstreamTimeout)
	}
	if c.Region != "" {
		if err := o.profiles.CheckParam("region", c.Region); err != nil {
			col.add(path{"region"}, "%q is not an Azure region name such as \"East US 2\" or eastus2", c.Region)
		} else {
			c.Derived.Region = catalog.NormalizeRegion(c.Region)
		}
	}
	oneOf(col, path{"cloud"}, c.Cloud, "public", "usgov", "china")
	c.validateEnforcer(col)
	c.validateServeStale(col)
	oneOf(col, path{"deny_response"}, c.DenyResponse, "nxdomain", "refused")
	if c.MaxInflight < 1 || c.MaxInflight > 65536 {
		col.add(path{"max_inflight"}, "%d is outside 1..65536", c.MaxInflight)
	}
	if c.CacheSize < 0 || c.CacheSize > 10_000_000 {
		col.add(path{"cache_size"}, "%d is outside 0..10000000", c.CacheSize)
	}
	if c.StateDir != "" && !filepath.IsAbs(c.StateDir) {
		col.add(path{"state_dir"}, "%q is not an absolute path", c.StateDir)
	}
	oneOf(col, path{"log", "format"}, c.Log.Format, "text", "json")
	if err := c.Derived.LogLevel.UnmarshalText([]byte(c.Log.Level)); err != nil {
		col.add(path{"log", "level"}, "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	c.validateAPI(col)
	c.validateClients(col, o)
	c.validateFeeds(col)
	c.validateCluster(col)
}

func (c *Config) validateEnforcer(col *collector) {
	e := &c.Enforcer
	p := path{"enforcer"}
	oneOf(col, p.with("backend"), e.Backend, "nftables", "none")
	if !tableName.MatchString(e.Table) {
		col.add(p.with("table"), "%q is not a table name (letters, digits, '_' and '-', at most 32)", e.Table)
	}
	oneOf(col, p.with("hook"), e.Hook, "forward", "output")
	oneOf(col, p.with("scope"), e.Scope, "client", "global")
	if e.Hook == "output" && e.Scope == "client" {
		col.add(p.with("scope"), "scope client needs hook forward: on the host the DNS client is loopback while connections leave from the interface address; use scope global")
	}
	if e.MinTTL < 0 || e.MinTTL > 24*time.Hour {
		col.add(p.with("min_ttl"), "%s is outside 0..24h", e.MinTTL)
	}
	if e.MaxTTL < time.Second || e.MaxTTL > 7*24*time.Hour {
		col.add(p.with("max_ttl"), "%s is outside 1s..168h", e.MaxTTL)
	} else if e.MaxTTL < e.MinTTL {
		col.add(p.with("max_ttl"), "%s is below min_ttl %s", e.MaxTTL, e.MinTTL)
	}
	if e.Grace < 0 || e.Grace > 24*time.Hour {
		col.add(p.with("grace"), "%s is outside 0..24h", e.Grace)
	}
	if e.MaxAddrsPerName < 1 || e.MaxAddrsPerName > 65536 {
		col.add(p.with("max_addrs_per_name"), "%d is outside 1..65536", e.MaxAddrsPerName)
	}
	if e.MaxEntries < 1 || e.MaxEntries > 1<<24 {
		col.add(p.with("max_entries"), "%d is outside 1..16777216", e.MaxEntries)
	}
	if e.MaxEntriesPerClient < 1 || e.MaxEntriesPerClient > e.MaxEntries {
		col.add(p.with("max_entries_per_client"), "%d is outside 1..max_entries (%d)", e.MaxEntriesPerClient, e.MaxEntries)
	}
	if e.Hold < time.Millisecond || e.Hold > 30*time.Second {
		col.add(p.with("hold"), "%s is outside 1ms..30s", e.Hold)
	}
	if e.GCInterval < time.Second || e.GCInterval > time.Hour {
		col.add(p.with("gc_interval"), "%s is outside 1s..1h", e.GCInterval)
	}
	oneOf(col, p.with("verify"), e.Verify, "off", "observe", "enforce")
	// Flow verification owns these bits of packet and conntrack marks
	// (enforce.CtMask): with them in fqdngate's own mark, its upstream
	// traffic would lose its mark in the table and be dropped.
	if e.Verify != "off" && e.Mark&0x03000000 != 0 {
		col.add(p.with("mark"), "0x%x uses bits 0x03000000, which verify owns; pick a mark without them", e.Mark)
	}
	if e.StaticMaxAddresses > 1<<32 {
		col.add(p.with("static_max_addresses"), "%d is more than 4294967296 (all of IPv4)", e.StaticMaxAddresses)
	}
}

func parseAddrPorts(col *collector, p path, in []string, defaultPort uint16) []netip.AddrPort {
	var out []netip.AddrPort
	seen := make(map[netip.AddrPort]bool)
	for i, s := range in {
		ap, err := netip.ParseAddrPort(s)
		if err != nil && defaultPort != 0 {
			if a, aerr := netip.ParseAddr(s); aerr == nil {
				ap, err = netip.AddrPortFrom(a, defaultPort), nil
			}
		}
		switch {
		case err != nil || ap.Port() == 0:
			col.add(p.with(i), "%q is not an IP address with a port (e.g. 192.0.2.1:53 or [2001:db8::1]:53)", s)
			continue
		case ap.Addr().Zone() != "":
			col.add(p.with(i), "%q: zoned addresses are not supported", s)
			continue
		case seen[ap]:
			col.add(p.with(i), "%s is listed twice", ap)
			continue
		}
		seen[ap] = true
		// Unmap keeps ::ffff:a.b.c.d from hiding an IPv4 address.
		out = append(out, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
	return out
}

func parseUpstreams(col *collector, p path, in []string) []upstream.Spec {
	var out []upstream.Spec
	seen := make(map[upstream.Spec]bool)
	for i, s := range in {
		sp, err := upstream.ParseSpec(s)
		switch {
		case err != nil:
			col.add(p.with(i), "%v", err)
			continue
		case seen[sp]:
			col.add(p.with(i), "%s is listed twice", sp)
			continue
		}
		seen[sp] = true
		out = append(out, sp)
	}
	return out
}

func (c *Config) validateClients(col *collector, o options) {
	var groups []*policy.Group
	groupAt := make(map[string]int)
	prefixAt := make(map[netip.Prefix]path)
	files := staticFiles{}
	global := c.checkParams(col, path{"params"}, c.Params, nil, o)
	for gi, cl := range c.Clients {
		gp := path{"clients", gi}
		values := c.checkParams(col, gp.with("params"), cl.Params, global, o)
		g := &policy.Group{Name: cl.Name}
		switch prev, dup := groupAt[cl.Name]; {
		case !groupName.MatchString(cl.Name):
			col.add(gp.with("name"), "%q is not a group name (letters, digits, '_', '.', '-')", cl.Name)
		case dup:
			col.add(gp.with("name"), "%q is already the name of clients[%d]", cl.Name, prev)
		default:
			groupAt[cl.Name] = gi
		}
		if len(cl.CIDRs) == 0 {
			col.add(gp.with("cidrs"), "required: at least one network, e.g. 192.0.2.0/24")
		}
		if cl.MaxQPS < 0 || cl.MaxQPS > 1_000_000 {
			col.add(gp.with("max_qps"), "%d is outside 0..1000000 (0: no limit)", cl.MaxQPS)
		}
		if cl.MaxInflight < 0 || cl.MaxInflight > 65536 {
			col.add(gp.with("max_inflight"), "%d is outside 0..65536 (0: no limit)", cl.MaxInflight)
		}
		for ci, s := range cl.CIDRs {
			cp := gp.with("cidrs", ci)
			pfx, err := netip.ParsePrefix(strings.TrimSpace(s))
			if err != nil {
				col.add(cp, "%q is not a network in CIDR form", s)
				continue
			}
			if pfx != pfx.Masked() {
				col.add(cp, "%s has host bits set; did you mean %s?", pfx, pfx.Masked())
				continue
			}
			if prev, dup := prefixAt[pfx]; dup {
				col.add(cp, "%s is already listed at %s (nested networks are fine, the same one twice is not)", pfx, prev)
				continue
			}
			prefixAt[pfx] = cp
			g.Prefixes = append(g.Prefixes, pfx)
		}
		for pi, name := range cl.Profiles {
			rules, err := o.profiles.ProfileRules(name, c.Cloud, values)
			if err != nil {
				col.add(gp.with("profiles", pi), "%v", err)
				continue
			}
			g.Rules = append(g.Rules, rules...)
		}
		ruleAt := make(map[string]int)
		for ri, r := range cl.Rules {
			rp := gp.with("rules", ri)
			rule := &policy.Rule{Name: r.Name, Source: "config"}
			switch prev, dup := ruleAt[r.Name]; {
			case r.Name == "":
				col.add(rp.with("name"), "required")
			case dup:
				col.add(rp.with("name"), "%q is already the name of rules[%d] in this group", r.Name, prev)
			default:
				ruleAt[r.Name] = ri
			}
			if len(r.FQDN) == 0 && r.Static == nil {
				col.add(rp.with("fqdn"), "required: at least one name pattern (or static)")
			}
			for fi, s := range r.FQDN {
				pat, err := policy.ParsePattern(s)
				if err != nil {
					col.add(rp.with("fqdn", fi), "%v", err)
					continue
				}
				rule.Patterns = append(rule.Patterns, pat)
			}
			if len(r.Ports) == 0 {
				col.add(rp.with("ports"), "required: at least one port, e.g. tcp/443")
			}
			for pi, s := range r.Ports {
				pr, err := policy.ParsePort(s)
				if err != nil {
					col.add(rp.with("ports", pi), "%v", err)
					continue
				}
				rule.Ports = append(rule.Ports, pr)
			}
			rule.Answers = answerRules(col, rp, r)
			checkTLSPorts(col, rp, r)
			if st := c.validateStatic(col, rp.with("static"), cl.Name, r, rule, files); st != nil {
				c.Derived.Static = append(c.Derived.Static, st)
			}
			g.Rules = append(g.Rules, rule)
		}
		groups = append(groups, g)
	}
	c.checkStaticElements(col, groups)
	if len(col.errs) > 0 {
		return
	}
	pol, err := policy.New(groups)
	if err != nil {
		col.add(path{"clients"}, "%v", err)
		return
	}
	c.Derived.Policy = pol
}

// checkParams validates a `params:` map and returns it merged over base,
// with the region added, as the catalog's placeholder values.
func (c *Config) checkParams(col *collector, p path, params, base map[string]string, o options) map[string]string {
	out := make(map[string]string, len(base)+len(params)+1)
	for k, v := range base {
		out[k] = v
	}
	if c.Derived.Region != "" {
		out["region"] = c.Derived.Region
	}
	for _, k := range slices.Sorted(maps.Keys(params)) {
		v := params[k]
		switch {
		case k == "region":
			col.add(p.with(k), "the region is set with the top-level region: key")
		default:
			if err := o.profiles.CheckParam(k, v); err != nil {
				col.add(p.with(k), "%v", err)
				continue
			}
			out[k] = v
		}
	}
	return out
}
