package policy

import (
	"net/netip"
	"testing"
)

func mustPatterns(t testing.TB, ss ...string) []Pattern {
	t.Helper()
	var out []Pattern
	for _, s := range ss {
		p, err := ParsePattern(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func TestForChain(t *testing.T) {
	strictEdge := mustRule(t, "edge", []string{"tcp/443"}, "*.app.example.com")
	strictEdge.Answers = AnswerRules{CNAMEStrict: true, Via: mustPatterns(t, "*.edge.example", "cdn*.pin.example")}
	strictOther := mustRule(t, "other", []string{"tcp/8883"}, "*.app.example.com")
	strictOther.Answers = AnswerRules{CNAMEStrict: true, Via: mustPatterns(t, "*.other.example")}
	loose := mustRule(t, "loose", []string{"tcp/80"}, "*.app.example.com")
	g := &Group{Name: "g", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}
	if _, err := New([]*Group{g}); err != nil {
		t.Fatal(err)
	}
	// New compiles the via patterns; these rules are not in g, so compile
	// them the way New does.
	for _, r := range []*Rule{strictEdge, strictOther, loose} {
		r.Answers.compile()
	}
	tests := []struct {
		name    string
		rules   []*Rule
		chain   []string
		want    []string // rule names left
		refused string
	}{
		{"no chain: strict rule grants", []*Rule{strictEdge}, nil, []string{"edge"}, ""},
		{"chain through the pinned zone", []*Rule{strictEdge}, []string{"x.edge.example.", "a1.edge.example."}, []string{"edge"}, ""},
		{"in-label via pattern", []*Rule{strictEdge}, []string{"cdn7.pin.example."}, []string{"edge"}, ""},
		{"case and trailing dot ignored", []*Rule{strictEdge}, []string{"X.EDGE.Example"}, []string{"edge"}, ""},
		{"the zone itself is not below it", []*Rule{strictEdge}, []string{"edge.example."}, nil, "edge.example."},
		{"second hop leaves the pinned zone", []*Rule{strictEdge}, []string{"x.edge.example.", "a1.akamai.example."}, nil, "a1.akamai.example."},
		{"not a host name never matches", []*Rule{strictEdge}, []string{"x\\032y.edge.example."}, nil, "x\\032y.edge.example."},
		{"loose rule grants any chain", []*Rule{loose}, []string{"a1.akamai.example."}, []string{"loose"}, ""},
		{"strict refuses, loose grants: loose alone", []*Rule{strictEdge, loose}, []string{"a1.akamai.example."}, []string{"loose"}, ""},
		{"both strict, one grants", []*Rule{strictEdge, strictOther}, []string{"b.other.example."}, []string{"other"}, ""},
		{"both strict, none grants: first target no rule allows", []*Rule{strictEdge, strictOther}, []string{"x.edge.example.", "z.cdn.example."}, nil, "z.cdn.example."},
		{"each target allowed by some rule, no rule all", []*Rule{strictEdge, strictOther}, []string{"x.edge.example.", "b.other.example."}, nil, "b.other.example."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decision{Group: g, Rules: tc.rules}
			got, refused := d.ForChain(tc.chain)
			names := got.RuleNames()
			if len(names) != len(tc.want) {
				t.Fatalf("rules %v, want %v", names, tc.want)
			}
			for i := range names {
				if names[i] != tc.want[i] {
					t.Fatalf("rules %v, want %v", names, tc.want)
				}
			}
			if refused != tc.refused {
				t.Errorf("refused %q, want %q", refused, tc.refused)
			}
		})
	}
}

func TestViaCompiledByNew(t *testing.T) {
	r := mustRule(t, "edge", []string{"tcp/443"}, "*.app.example.com")
	r.Answers = AnswerRules{CNAMEStrict: true, Via: mustPatterns(t, "*.edge.example")}
	g := &Group{Name: "g", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, Rules: []*Rule{r}}
	if r.Answers.ViaAllows("x.edge.example.") {
		t.Fatal("allowed before the policy compiled the rule")
	}
	p, err := New([]*Group{g})
	if err != nil {
		t.Fatal(err)
	}
	d := p.Match(netip.MustParseAddr("192.0.2.10"), "a.app.example.com.")
	if got, refused := d.ForChain([]string{"x.edge.example."}); !got.Allowed() || refused != "" {
		t.Fatalf("ForChain through the pinned zone: %v %q", got.RuleNames(), refused)
	}
}

func TestPrivateOnly(t *testing.T) {
	pub := mustRule(t, "pub", []string{"tcp/443"}, "a.example.com")
	priv := mustRule(t, "priv", []string{"tcp/8883"}, "a.example.com")
	priv.Answers.AllowPrivate = true
	tests := []struct {
		name  string
		rules []*Rule
		allow bool
		want  []string
		all   bool
	}{
		{"default withholds", []*Rule{pub}, false, nil, false},
		{"allowing rule alone", []*Rule{priv}, true, []string{"priv"}, true},
		{"mixed: only the allowing rule grants private addresses", []*Rule{pub, priv}, true, []string{"priv"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decision{Rules: tc.rules}
			if got := d.AllowsPrivate(); got != tc.allow {
				t.Errorf("AllowsPrivate %v, want %v", got, tc.allow)
			}
			n, all := d.PrivateOnly()
			if all != tc.all || len(n.Rules) != len(tc.want) {
				t.Fatalf("PrivateOnly %v %v, want %v %v", n.RuleNames(), all, tc.want, tc.all)
			}
			for i, r := range n.Rules {
				if r.Name != tc.want[i] {
					t.Fatalf("PrivateOnly %v, want %v", n.RuleNames(), tc.want)
				}
			}
		})
	}
}
