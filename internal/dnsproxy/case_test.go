package dnsproxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/enforce"
	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/upstream"
)

// TestRandomCaseThroughThePath: with the real pool sending names in
// 0x20 case to an upstream that answers with owners and CNAME targets in
// whatever case (as compression to the question's name gives), the chain
// is still walked, the addresses installed, the answer cached under one
// key for every case, and each client told its own question.
func TestRandomCaseThroughThePath(t *testing.T) {
	var asked atomic.Int32
	var sawMixed atomic.Bool
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		asked.Add(1)
		name := r.Question[0].Name
		if strings.ToLower(name) != name && strings.ToUpper(name) != name {
			sawMixed.Store(true)
		}
		m := new(dns.Msg)
		m.SetReply(r)
		for _, s := range []string{
			name + " 300 IN CNAME Prod-Update.AzureEdge.EXAMPLE.",
			"prod-update.azureedge.example. 60 IN CNAME A1.akamai.example.",
			"a1.AKAMAI.example. 20 IN A 203.0.113.7",
		} {
			rr, _ := dns.NewRR(s)
			m.Answer = append(m.Answer, rr)
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })

	pool, err := upstream.New([]upstream.Spec{{Addr: netip.MustParseAddrPort(pc.LocalAddr().String())}},
		upstream.Options{Timeout: time.Second, CaseRandomization: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	enf := enforce.NewFake()
	o := Options{DenyRcode: dns.RcodeNameError, MinTTL: time.Minute, MaxTTL: time.Hour, Grace: 30 * time.Second, Cache: NewCache(100)}
	h := NewHandler(testPolicy(t), pool, ledger.New(ledger.Options{}), enf, o, slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return t0 })

	for i, name := range []string{"prod.update.sphere.azure.net.", "PROD.Update.Sphere.Azure.Net.", "prod.UPDATE.sphere.azure.net."} {
		resp := h.Resolve(context.Background(), devA, query(name, dns.TypeA, true))
		if resp.Rcode != dns.RcodeSuccess {
			t.Fatalf("%s: %s", name, dns.RcodeToString[resp.Rcode])
		}
		if resp.Question[0].Name != name {
			t.Errorf("%s: client told question %q", name, resp.Question[0].Name)
		}
		var addrs []string
		for _, rr := range resp.Answer {
			if a, ok := rr.(*dns.A); ok {
				addrs = append(addrs, a.A.String())
			}
		}
		if len(addrs) != 1 || addrs[0] != "203.0.113.7" {
			t.Errorf("%s: addresses %v, want the chain's end", name, addrs)
		}
		el := ledger.Elem{Client: devA, Addr: netip.MustParseAddr("203.0.113.7"), Port: tcp443}
		if !enf.Has(el, t0) {
			t.Errorf("%s: %v not installed", name, el)
		}
		if n := asked.Load(); n != 1 {
			t.Errorf("query %d: upstream asked %d times, want once (one cache key for every case)", i, n)
		}
	}
	if !sawMixed.Load() {
		t.Error("the upstream never saw a name in mixed case")
	}
}
