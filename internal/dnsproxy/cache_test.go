package dnsproxy

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/ledger"
)

func msgWith(t *testing.T, q *dns.Msg, rcode int, rrs ...string) *dns.Msg {
	t.Helper()
	r := new(dns.Msg)
	r.SetReply(q)
	r.Rcode = rcode
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		if _, soa := rr.(*dns.SOA); soa {
			r.Ns = append(r.Ns, rr)
		} else {
			r.Answer = append(r.Answer, rr)
		}
	}
	return r
}

func TestCacheAgesAndExpires(t *testing.T) {
	c := NewCache(100)
	q := upstreamQuery(query("www.example.com.", dns.TypeA, false))
	c.Put(q, msgWith(t, q, dns.RcodeSuccess, "www.example.com. 300 IN CNAME edge.example.net.", "edge.example.net. 20 IN A 203.0.113.5"), nil, t0)
	tests := []struct {
		at   time.Duration
		hit  bool
		ttls []uint32
	}{
		{0, true, []uint32{300, 20}},
		{5 * time.Second, true, []uint32{295, 15}},
		{19 * time.Second, true, []uint32{281, 1}},
		{20 * time.Second, false, nil},
	}
	for _, tc := range tests {
		m := c.Get(q, t0.Add(tc.at))
		if (m != nil) != tc.hit {
			t.Fatalf("at %s: hit %v", tc.at, m != nil)
		}
		for i, ttl := range tc.ttls {
			if got := m.Answer[i].Header().Ttl; got != ttl {
				t.Errorf("at %s: rr %d ttl %d, want %d", tc.at, i, got, ttl)
			}
		}
	}
	// Case does not matter; the DO bit does.
	upper := upstreamQuery(query("WWW.Example.COM.", dns.TypeA, false))
	c.Put(q, msgWith(t, q, dns.RcodeSuccess, "www.example.com. 20 IN A 203.0.113.5"), nil, t0)
	if c.Get(upper, t0) == nil {
		t.Error("0x20 case variant missed")
	}
	if c.Get(upstreamQuery(query("www.example.com.", dns.TypeAAAA, false)), t0) != nil {
		t.Error("another type hit")
	}
}

func TestCacheNegativeAndBounds(t *testing.T) {
	c := NewCache(32)
	q := upstreamQuery(query("nope.example.", dns.TypeA, false))
	c.Put(q, msgWith(t, q, dns.RcodeNameError, "example. 3600 IN SOA ns.example. h.example. 1 7200 900 1209600 3600"), nil, t0)
	if c.Get(q, t0.Add(29*time.Second)) == nil || c.Get(q, t0.Add(31*time.Second)) != nil {
		t.Error("negative answers are kept 30s at most")
	}
	fail := upstreamQuery(query("fail.example.", dns.TypeA, false))
	c.Put(fail, msgWith(t, fail, dns.RcodeServerFailure), nil, t0)
	if c.Get(fail, t0) != nil {
		t.Error("SERVFAIL cached")
	}
	for i := range 1000 {
		n := upstreamQuery(query(string(rune('a'+i%26))+"x"+time.Duration(i).String()+".example.", dns.TypeA, false))
		c.Put(n, msgWith(t, n, dns.RcodeSuccess, n.Question[0].Name+" 60 IN A 203.0.113.1"), nil, t0)
	}
	if n := c.Len(); n > 32 {
		t.Errorf("cache holds %d answers, bound 32", n)
	}
	var nilCache *Cache
	nilCache.Put(q, q, nil, t0)
	if nilCache.Get(q, t0) != nil || nilCache.Len() != 0 {
		t.Error("nil cache")
	}
}

// TestCachedAnswerStillInstalls: the second client asking a cached name
// gets the answer without an upstream query, and the kernel holds its
// addresses for it (scope client), for the remaining TTL.
func TestCachedAnswerStillInstalls(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Cache = NewCache(100); o.MinTTL = 0 })
	devB := netip.MustParseAddr("192.0.2.11")
	for _, c := range []netip.Addr{devA, devB} {
		resp := e.h.Resolve(context.Background(), c, query("prod.update.sphere.azure.net.", dns.TypeA, false))
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) == 0 {
			t.Fatalf("%s: %v", c, resp)
		}
	}
	if len(e.up.asked) != 1 {
		t.Errorf("upstream asked %d times, want 1", len(e.up.asked))
	}
	for _, c := range []netip.Addr{devA, devB} {
		el := ledger.Elem{Client: c, Addr: netip.MustParseAddr("203.0.113.7"), Port: tcp443}
		if !e.enf.Has(el, t0.Add(time.Second)) {
			t.Errorf("no element for %s", c)
		}
	}
}
