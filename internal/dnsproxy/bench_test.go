package dnsproxy

import (
	"testing"

	"github.com/miekg/dns"
)

// BenchmarkWalk walks a CDN answer: a two-hop CNAME chain to four
// addresses, and strips it to what the chain vouches for.
func BenchmarkWalk(b *testing.B) {
	q := new(dns.Msg)
	q.SetQuestion("prod.update.sphere.azure.net.", dns.TypeA)
	r := new(dns.Msg)
	r.SetReply(q)
	for _, s := range []string{
		"prod.update.sphere.azure.net. 300 IN CNAME prod.update.sphere.azure.net.edgekey.net.",
		"prod.update.sphere.azure.net.edgekey.net. 60 IN CNAME e1234.a.akamaiedge.net.",
		"e1234.a.akamaiedge.net. 20 IN A 203.0.113.7", "e1234.a.akamaiedge.net. 20 IN A 203.0.113.8",
		"e1234.a.akamaiedge.net. 20 IN A 203.0.113.9", "e1234.a.akamaiedge.net. 20 IN A 203.0.113.10",
	} {
		rr, _ := dns.NewRR(s)
		r.Answer = append(r.Answer, rr)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		m := r.Copy()
		w := Walk(q.Question[0].Name, m.Answer)
		strip(m, w)
		if len(w.Addrs) != 4 {
			b.Fatal(w)
		}
	}
}
