package dnsproxy

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/miekg/dns"
)

func rrs(t *testing.T, lines ...string) []dns.RR {
	t.Helper()
	var out []dns.RR
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		out = append(out, rr)
	}
	return out
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// TestWalk: what Walk learns from an answer is what the gateway installs,
// so every record it must not trust is left out.
func TestWalk(t *testing.T) {
	// 20 addresses, each twice: past linearAddrs, repeats are found by set.
	var many []string
	var manyWant []string
	for i := range 20 {
		a := fmt.Sprintf("203.0.113.%d", i+1)
		many = append(many, "e.cdn.example. 30 IN A "+a, "e.cdn.example. 30 IN A "+a)
		manyWant = append(manyWant, a)
	}
	var long []string // a chain longer than maxChain
	for i := range maxChain + 4 {
		long = append(long, fmt.Sprintf("c%d.example. 60 IN CNAME c%d.example.", i, i+1))
	}
	long = append(long, fmt.Sprintf("c%d.example. 60 IN A 198.51.100.1", maxChain+4))

	for _, c := range []struct {
		name   string
		qname  string
		answer []string
		chain  []string
		addrs  []netip.Addr
		ttl    uint32
	}{
		{name: "A records of the name", qname: "api.example.",
			answer: []string{"api.example. 300 IN A 192.0.2.1", "api.example. 200 IN A 192.0.2.2"},
			addrs:  addrs("192.0.2.1", "192.0.2.2"), ttl: 200},
		{name: "CNAME chain to a CDN, lowest TTL on the way", qname: "Prod.Update.Example.",
			answer: []string{
				"prod.update.example. 300 IN CNAME prod.update.example.edgekey.net.",
				"PROD.UPDATE.EXAMPLE.EDGEKEY.NET. 60 IN CNAME e1.a.cdn.example.",
				"e1.a.cdn.example. 20 IN A 203.0.113.7", "E1.A.CDN.EXAMPLE. 40 IN AAAA 2001:db8::7",
			},
			chain: []string{"prod.update.example.edgekey.net.", "e1.a.cdn.example."},
			addrs: addrs("203.0.113.7", "2001:db8::7"), ttl: 20},
		{name: "chain records out of order", qname: "a.example.",
			answer: []string{"b.example. 50 IN A 192.0.2.9", "b.example. 50 IN CNAME c.example.", "a.example. 70 IN CNAME b.example.",
				"c.example. 90 IN A 192.0.2.10"},
			chain: []string{"b.example.", "c.example."}, addrs: addrs("192.0.2.10"), ttl: 50},
		{name: "addresses of a name off the chain are not learnt", qname: "a.example.",
			answer: []string{"a.example. 60 IN CNAME b.example.", "b.example. 60 IN A 192.0.2.1", "evil.example. 5 IN A 198.51.100.66"},
			chain:  []string{"b.example."}, addrs: addrs("192.0.2.1"), ttl: 60},
		{name: "addresses in the middle of the chain are not learnt", qname: "a.example.",
			answer: []string{"a.example. 60 IN CNAME b.example.", "a.example. 60 IN A 198.51.100.66", "b.example. 60 IN A 192.0.2.1"},
			chain:  []string{"b.example."}, addrs: addrs("192.0.2.1"), ttl: 60},
		{name: "a CNAME loop ends the chain", qname: "a.example.",
			answer: []string{"a.example. 60 IN CNAME b.example.", "B.example. 60 IN CNAME A.example.", "b.example. 60 IN A 192.0.2.1"},
			chain:  []string{"b.example."}, addrs: addrs("192.0.2.1"), ttl: 60},
		{name: "a chain longer than maxChain is cut there", qname: "c0.example.", answer: long,
			chain: func() []string {
				var out []string
				for i := range maxChain {
					out = append(out, fmt.Sprintf("c%d.example.", i+1))
				}
				return out
			}(), ttl: 60},
		{name: "repeats and mapped IPv4 count once", qname: "a.example.",
			answer: []string{"a.example. 60 IN A 192.0.2.1", "a.example. 60 IN AAAA ::ffff:192.0.2.1", "a.example. 60 IN A 192.0.2.1"},
			addrs:  addrs("192.0.2.1"), ttl: 60},
		{name: "many addresses, each twice", qname: "e.cdn.example.", answer: many, addrs: addrs(manyWant...), ttl: 30},
		{name: "HTTPS hints on the chain", qname: "svc.example.",
			answer: []string{"svc.example. 60 IN CNAME edge.example.",
				`edge.example. 30 IN HTTPS 1 . alpn="h2" ipv4hint="192.0.2.5" ipv6hint="2001:db8::5"`,
				`other.example. 30 IN HTTPS 1 . ipv4hint="198.51.100.66"`},
			chain: []string{"edge.example."}, addrs: addrs("192.0.2.5", "2001:db8::5"), ttl: 30},
		{name: "no answer", qname: "a.example."},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := Walk(c.qname, rrs(t, c.answer...))
			if w.Name != dns.CanonicalName(c.qname) {
				t.Errorf("Name %q, want %q", w.Name, dns.CanonicalName(c.qname))
			}
			if !slices.Equal(w.Chain, c.chain) {
				t.Errorf("Chain %q, want %q", w.Chain, c.chain)
			}
			if !slices.Equal(w.Addrs, c.addrs) {
				t.Errorf("Addrs %v, want %v", w.Addrs, c.addrs)
			}
			if len(c.addrs) > 0 && w.MinTTL != c.ttl {
				t.Errorf("MinTTL %d, want %d", w.MinTTL, c.ttl)
			}
		})
	}
}
