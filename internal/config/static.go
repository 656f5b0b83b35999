package config

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fqdngate/fqdngate/internal/policy"
	"github.com/fqdngate/fqdngate/internal/servicetags"
)

// Static is a rule's static part: prefixes that are open on the rule's
// ports for the rule's client group at all times, without DNS. It is for
// endpoints a service tag really carries (see `fqdngate coverage`); a
// CDN-served name is in no tag and needs its FQDN rule.
type Static struct {
	// ServiceTags is a Service Tags JSON file (ServiceTags_Public_*.json
	// or the discovery API's answer); a relative path is taken from the
	// configuration file's directory. Required with tags.
	ServiceTags string `yaml:"service_tags"`
	// Tags are tag names of that file, e.g. AzureIoTHub.EastUS
	// (case-insensitive, as Azure treats them).
	Tags []string `yaml:"tags"`
	// CIDRs are prefixes of your own, e.g. 203.0.113.0/28.
	CIDRs []string `yaml:"cidrs"`
}

// StaticRule is one rule's static prefixes, as validation derived them.
type StaticRule struct {
	Group string
	Rule  string
	// Prefixes are the tags' and cidrs' prefixes, without those another
	// one contains.
	Prefixes []netip.Prefix
	Ports    []policy.PortRange
	// Breadth is what the prefixes open (IPv6 in /64s).
	Breadth servicetags.Breadth
	// Tags and File say where the prefixes came from, for the effective
	// configuration; ChangeNumber is the file's version.
	Tags         []string
	File         string
	ChangeNumber int64

	at path // the rule's static:, for errors found once every group is known
}

// maxStaticElements bounds the kernel elements of all static rules
// together: they are created with the table, in one netlink transaction,
// which must stay well below the socket buffer (4,096 IPv4 range elements
// already overflow it). A regional service tag needs a few dozen.
const maxStaticElements = 2048

// staticFiles caches the service tags files one validation reads, by path.
type staticFiles map[string]*servicetags.File

// validateStatic checks a rule's static part and returns its prefixes.
// Every prefix, every tag and the rule as a whole must stay within
// enforcer.static_max_addresses (IPv6 counted in /64s, as the coverage
// report does): a static rule is a hole without a name, so it stays narrow.
func (c *Config) validateStatic(col *collector, p path, group string, r Rule, rule *policy.Rule, files staticFiles) *StaticRule {
	s := r.Static
	if s == nil {
		return nil
	}
	limit := c.Enforcer.StaticMaxAddresses
	out := &StaticRule{Group: group, Rule: r.Name, Ports: rule.Ports, at: p}
	var all []netip.Prefix
	tooBroad := func(at path, what string, b servicetags.Breadth) bool {
		if b.V4 > limit || b.V6 > limit || b.V4+b.V6 > limit {
			col.add(at, "%s opens %s, more than enforcer.static_max_addresses (%s; IPv6 counts in /64s)", what, b, servicetags.Count(limit))
			return true
		}
		return false
	}
	if len(s.Tags) == 0 && len(s.CIDRs) == 0 {
		col.add(p, "needs tags or cidrs")
	}
	if len(s.Tags) > 0 {
		f := c.staticFile(col, p.with("service_tags"), s.ServiceTags, files)
		if f != nil {
			out.File, out.ChangeNumber = f.Path, f.ChangeNumber
			for i, name := range s.Tags {
				t := f.Tag(name)
				if t == nil {
					col.add(p.with("tags", i), "no tag %q in %s (change %d)", name, f.Path, f.ChangeNumber)
					continue
				}
				if len(t.Prefixes) == 0 {
					col.add(p.with("tags", i), "tag %q has no prefixes in %s", t.Name, f.Path)
					continue
				}
				if tooBroad(p.with("tags", i), "tag "+t.Name, servicetags.BreadthOf(t.Prefixes)) {
					continue
				}
				out.Tags = append(out.Tags, t.Name)
				all = append(all, t.Prefixes...)
			}
		}
	} else if s.ServiceTags != "" {
		col.add(p.with("service_tags"), "given without tags")
	}
	for i, cidr := range s.CIDRs {
		pfx, err := netip.ParsePrefix(strings.TrimSpace(cidr))
		switch {
		case err != nil:
			col.add(p.with("cidrs", i), "%q is not a network in CIDR form", cidr)
			continue
		case pfx != pfx.Masked():
			col.add(p.with("cidrs", i), "%s has host bits set; did you mean %s?", pfx, pfx.Masked())
			continue
		case tooBroad(p.with("cidrs", i), pfx.String(), servicetags.BreadthOf([]netip.Prefix{pfx})):
			continue
		}
		all = append(all, pfx)
	}
	out.Breadth = servicetags.BreadthOf(all)
	if tooBroad(p, "the rule's static part", out.Breadth) {
		return nil
	}
	out.Prefixes = servicetags.Union(all)
	return out
}

// checkStaticElements counts, at most, the kernel elements the static rules
// need (client ranges × prefixes × ports, per family; a network of another
// group nested in the rule's splits a range in two) against
// maxStaticElements.
func (c *Config) checkStaticElements(col *collector, groups []*policy.Group) {
	total := 0
	for _, s := range c.Derived.Static {
		var own []netip.Prefix
		for _, g := range groups {
			if g.Name == s.Group {
				own = g.Prefixes
			}
		}
		n := 0
		for _, v6 := range []bool{false, true} {
			dests := 0
			for _, p := range s.Prefixes {
				if p.Addr().Is6() == v6 {
					dests++
				}
			}
			clients := 1
			if c.Enforcer.Scope != "global" {
				clients = 0
				for _, g := range groups {
					for _, q := range g.Prefixes {
						if q.Addr().Is6() != v6 {
							continue
						}
						if g.Name == s.Group || slices.ContainsFunc(own, func(p netip.Prefix) bool { return p.Bits() < q.Bits() && p.Contains(q.Addr()) }) {
							clients++
						}
					}
				}
			}
			n += clients * dests * len(s.Ports)
		}
		total += n
		if total > maxStaticElements {
			col.add(s.at, "the static rules need up to %d kernel elements with this one (%d here: client networks × prefixes × ports), more than %d; use fewer prefixes, ports or client networks", total, n, maxStaticElements)
			return
		}
	}
}

func (c *Config) staticFile(col *collector, p path, name string, files staticFiles) *servicetags.File {
	if name == "" {
		col.add(p, "required with tags: a service tags file (ServiceTags_Public_*.json)")
		return nil
	}
	if !filepath.IsAbs(name) {
		name = filepath.Join(filepath.Dir(col.file), name)
	}
	if f, ok := files[name]; ok {
		return f // nil when it failed before: reported once
	}
	f, err := servicetags.Load(name)
	if err != nil {
		msg := err.Error()
		if !errors.Is(err, servicetags.ErrFormat) {
			msg = "cannot read: " + msg
		}
		col.add(p, "%s", strings.TrimSuffix(msg, ": "+servicetags.ErrFormat.Error()))
	}
	files[name] = f
	return f
}

// writeStatic prints a group's static rules for `validate`: what each opens
// and where its prefixes come from.
func writeStatic(w io.Writer, group string, rules []*StaticRule) {
	for _, s := range rules {
		if s.Group != group {
			continue
		}
		ports := make([]string, len(s.Ports))
		for i, pr := range s.Ports {
			ports[i] = pr.String()
		}
		from := "cidrs"
		if len(s.Tags) > 0 {
			from = fmt.Sprintf("%s from %s (change %d)", strings.Join(s.Tags, ", "), s.File, s.ChangeNumber)
			if len(s.Prefixes) > 0 {
				from += " and cidrs"
			}
		}
		fmt.Fprintf(w, "  static %s: %s in %d prefixes on %s, without DNS: %s\n", s.Rule, s.Breadth, len(s.Prefixes), strings.Join(ports, " "), from)
	}
}
