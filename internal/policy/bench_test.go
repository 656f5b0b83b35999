package policy

import (
	"fmt"
	"net/netip"
	"testing"
)

// BenchmarkMatch50k matches against one group holding 50,000 patterns of
// all three kinds, half hits and half misses.
func BenchmarkMatch50k(b *testing.B) {
	rules := make([]*Rule, 0, 50000)
	for i := range 50000 {
		var s string
		switch i % 3 {
		case 0:
			s = fmt.Sprintf("host%d.svc%d.example.com", i, i%97)
		case 1:
			s = fmt.Sprintf("*.zone%d.example.net", i)
		default:
			s = fmt.Sprintf("azgn%d*.bus%d.example.org", i, i%13)
		}
		p, err := ParsePattern(s)
		if err != nil {
			b.Fatal(err)
		}
		rules = append(rules, &Rule{Name: s, Patterns: []Pattern{p}})
	}
	g := &Group{Name: "g", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, Rules: rules}
	if _, err := New([]*Group{g}); err != nil {
		b.Fatal(err)
	}
	names := []string{"host300.svc9.example.com.", "a.b.zone301.example.net.", "azgn302x.bus3.example.org.", "nothing.example.com.",
		"deep.a.b.c.d.example.org.", "host1.svc2.example.com.", "zone301.example.net.", "www.microsoft.com."}
	b.ReportAllocs()
	b.ResetTimer()
	hits := 0
	for i := 0; i < b.N; i++ {
		if len(g.Match(names[i%len(names)])) > 0 {
			hits++
		}
	}
	if hits == 0 {
		b.Fatal("no hits")
	}
}
