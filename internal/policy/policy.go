package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
)

// Rule allows a set of name patterns on a set of ports.
type Rule struct {
	// Name identifies the rule in logs, the ledger and explanations.
	Name string
	// Source says where the rule came from: "config" or a catalog profile.
	Source   string
	Patterns []Pattern
	Ports    []PortRange
	// Answers limits what an answer may hold to be granted by this rule
	// (see answers.go); the zero value is the default: private addresses
	// withheld, any CNAME target.
	Answers AnswerRules
}

// Group is a named set of client networks and the rules they may use.
type Group struct {
	Name     string
	Prefixes []netip.Prefix
	Rules    []*Rule
	names    trie
}

// Decision is the outcome of matching one query.
type Decision struct {
	// Group is the client's group; nil when the client is in no group, in
	// which case nothing may be resolved (no open resolver).
	Group *Group
	// Rules are the rules that allow the name, in configuration order;
	// empty when the name is denied.
	Rules []*Rule
}

// Allowed reports whether the name may be resolved.
func (d Decision) Allowed() bool { return len(d.Rules) > 0 }

// Ports is the union of the matching rules' ports.
//
// With one rule (the usual case) it is that rule's own list: callers must
// not change it. This runs for every allowed query.
func (d Decision) Ports() []PortRange {
	if len(d.Rules) == 1 {
		return d.Rules[0].Ports
	}
	lists := make([][]PortRange, len(d.Rules))
	for i, r := range d.Rules {
		lists[i] = r.Ports
	}
	return MergePorts(lists...)
}

// RuleNames lists the matching rules' names.
func (d Decision) RuleNames() []string {
	out := make([]string, len(d.Rules))
	for i, r := range d.Rules {
		out[i] = r.Name
	}
	return out
}

// Policy is an immutable, compiled set of client groups.
type Policy struct {
	groups []*Group
	// byPrefix holds every client prefix, longest first, so the first hit
	// is the longest-prefix match.
	byPrefix []prefixGroup
}

type prefixGroup struct {
	prefix netip.Prefix
	group  *Group
}

// New compiles groups into a Policy. Prefixes must be unique across groups
// (config validation reports duplicates with their positions); nested
// prefixes are allowed and the longest prefix wins.
func New(groups []*Group) (*Policy, error) {
	p := &Policy{groups: groups}
	seen := make(map[netip.Prefix]string)
	for _, g := range groups {
		for i, r := range g.Rules {
			// A rule's ports as Ports returns them for it alone: without
			// repeats, in the order first named.
			r.Ports = MergePorts(r.Ports)
			r.Answers.compile()
			for _, pat := range r.Patterns {
				g.names.insert(pat, i)
			}
		}
		for _, pfx := range g.Prefixes {
			pfx = pfx.Masked()
			if other, dup := seen[pfx]; dup {
				return nil, fmt.Errorf("client network %s is in both %q and %q", pfx, other, g.Name)
			}
			seen[pfx] = g.Name
			p.byPrefix = append(p.byPrefix, prefixGroup{pfx, g})
		}
	}
	sort.SliceStable(p.byPrefix, func(i, j int) bool {
		return p.byPrefix[i].prefix.Bits() > p.byPrefix[j].prefix.Bits()
	})
	return p, nil
}

// Groups returns the groups in configuration order.
func (p *Policy) Groups() []*Group { return p.groups }

// Prefixes returns every client prefix of every group.
func (p *Policy) Prefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(p.byPrefix))
	for _, pg := range p.byPrefix {
		out = append(out, pg.prefix)
	}
	return out
}

// GroupOf returns the group of a client address, or nil. The linear scan is
// deliberate: deployments have a handful of client networks, and a scan of
// a short slice beats a tree for that size.
func (p *Policy) GroupOf(client netip.Addr) *Group {
	client = client.Unmap()
	for _, pg := range p.byPrefix {
		if pg.prefix.Contains(client) {
			return pg.group
		}
	}
	return nil
}

// Match decides a query for qname from client. qname is in presentation
// form as it came off the wire; names that are not plain host names never
// match (see NormalizeName).
func (p *Policy) Match(client netip.Addr, qname string) Decision {
	g := p.GroupOf(client)
	if g == nil {
		return Decision{}
	}
	return Decision{Group: g, Rules: g.Match(qname)}
}

// Match returns the group's rules that allow qname, in rule order.
func (g *Group) Match(qname string) []*Rule {
	name, ok := NormalizeName(qname)
	if !ok {
		return nil
	}
	var buf [8]int
	idx := g.names.match(name, buf[:0])
	if len(idx) == 0 {
		return nil
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	rules := make([]*Rule, len(idx))
	for i, ri := range idx {
		rules[i] = g.Rules[ri]
	}
	return rules
}
