package dnsproxy

import (
	"context"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// FuzzResolve feeds raw messages through the whole query path. Whatever
// arrives: no panic, a reply that packs, the same reply when it is
// replayed from the cache, and no denied name upstream.
func FuzzResolve(f *testing.F) {
	for _, m := range []*dns.Msg{
		query("prod.update.sphere.azure.net.", dns.TypeA, true),
		query("evil.example.", dns.TypeA, false),
		query("api.svc.example.com.", dns.TypeHTTPS, true),
		query(`a\000b.svc.example.com.`, dns.TypeA, false),
	} {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		req := new(dns.Msg)
		if err := req.Unpack(raw); err != nil {
			return
		}
		// Three times, with a cache: from the upstream, from the cached
		// answer, and replayed from the reply the second one made, which
		// must be the same reply.
		e := newEnv(t, func(o *Options) { o.Cache = NewCache(16) })
		e.up.wire = true
		var replies []string
		for range 3 {
			resp := e.h.Resolve(context.Background(), devA, req)
			if resp == nil {
				t.Fatal("nil reply")
			}
			if _, err := resp.Pack(); err != nil {
				t.Fatalf("reply does not pack: %v", err)
			}
			if resp.Id != req.Id {
				t.Fatalf("reply id %d, query id %d", resp.Id, req.Id)
			}
			replies = append(replies, resp.String())
		}
		if replies[1] != replies[2] {
			t.Fatalf("replayed reply differs:\n%s\nfrom the one it was made from:\n%s", replies[2], replies[1])
		}
		if len(req.Question) == 1 && !testPolicy(t).Match(devA, req.Question[0].Name).Allowed() {
			if len(e.up.asked) != 0 {
				t.Fatalf("denied name %q was sent upstream", req.Question[0].Name)
			}
		}
		for _, el := range e.led.Lookup(netip.MustParseAddr("203.0.113.99"), netip.Addr{}) {
			t.Fatalf("off-chain address learnt: %+v", el)
		}
	})
}
