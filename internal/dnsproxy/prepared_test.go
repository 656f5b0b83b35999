package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/enforce"
	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// clockEnv is a handler with a cache and a clock the test steps.
type clockEnv struct {
	*env
	now time.Time
}

func newClockEnv(t *testing.T, global bool) *clockEnv {
	ce := &clockEnv{now: t0}
	o := Options{DenyRcode: dns.RcodeNameError, MinTTL: 0, MaxTTL: time.Hour, Grace: 5 * time.Second,
		Cache: NewCache(100), Global: global}
	records := cdnRecords()
	// An additional record that is no address: kept, and not aged.
	records["txt.svc.example.com."] = []string{"txt.svc.example.com. 40 IN A 203.0.113.50"}
	records["extra:txt.svc.example.com."] = []string{`info.example. 30 IN TXT "kept as it came"`}
	ce.env = &env{up: &fakeUpstream{records: records, wire: true}, enf: enforce.NewFake(), led: ledger.New(ledger.Options{Global: global}), opts: o}
	ce.h = NewHandler(testPolicy(t), ce.up, ce.led, ce.enf, o, slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return ce.now })
	return ce
}

// A reply replayed from a prepared one is, byte for byte, the reply the
// full path makes for the same query at the same moment: for each kind of
// client (family, EDNS, DO), letter case, RD bit, and age of the answer.
// The client is installed for the answer's remaining TTL either way.
func TestPreparedReplyEqualsTheFullPath(t *testing.T) {
	dev6 := netip.MustParseAddr("2001:db8:1::10")
	type ask struct {
		name  string
		qtype uint16
		edns  bool
		do    bool
		rd    bool
		from  netip.Addr
	}
	cases := []ask{
		{"prod.update.sphere.azure.net.", dns.TypeA, false, false, true, devA},
		{"PROD.Update.Sphere.Azure.NET.", dns.TypeA, true, false, true, devA},
		{"prod.update.sphere.azure.net.", dns.TypeA, true, true, false, devA},
		{"api.svc.example.com.", dns.TypeHTTPS, true, false, true, devA},
		{"Api.Svc.Example.Com.", dns.TypeHTTPS, false, false, true, dev6},
		{"v6.svc.example.com.", dns.TypeAAAA, true, false, true, dev6},
		{"v6.svc.example.com.", dns.TypeAAAA, true, false, true, devA}, // withheld over IPv4
		{"txt.svc.example.com.", dns.TypeA, true, false, true, devA},
	}
	msg := func(a ask, id uint16) *dns.Msg {
		m := query(a.name, a.qtype, false)
		m.Id, m.RecursionDesired = id, a.rd
		if a.edns {
			m.SetEdns0(1232, a.do)
		}
		return m
	}
	for _, global := range []bool{false, true} {
		for _, a := range cases {
			replayed, full := newClockEnv(t, global), newClockEnv(t, global)
			// The answer is cached at t0 in both; replayed also makes the
			// reply it then replays (its second query, at t0+1s).
			for _, ce := range []*clockEnv{replayed, full} {
				ce.h.Resolve(context.Background(), a.from, msg(a, 1))
			}
			// The reply is made for a client that differs in what the
			// replay sets: ID, RD bit and letter case.
			other := a
			other.rd, other.name = !a.rd, strings.ToLower(a.name)
			replayed.now = t0.Add(time.Second)
			replayed.h.Resolve(context.Background(), a.from, msg(other, 2))
			for _, at := range []time.Duration{3 * time.Second, 17 * time.Second} {
				replayed.now, full.now = t0.Add(at), t0.Add(at)
				// full made no reply from its cached answer yet: drop any
				// it made, so that it takes the full path every time.
				clearReplies(full.opts.Cache)
				want := full.h.Resolve(context.Background(), a.from, msg(a, 0x4242))
				got := replayed.h.Resolve(context.Background(), a.from, msg(a, 0x4242))
				if got.String() != want.String() {
					t.Errorf("global=%v %s %s from %s at +%s:\nreplayed:\n%s\nfull path:\n%s", global, a.name, dns.TypeToString[a.qtype], a.from, at, got, want)
				}
				if len(replayed.up.asked) != 1 {
					t.Fatalf("%s: upstream asked %d times, want 1", a.name, len(replayed.up.asked))
				}
				for el, exp := range full.enf.Elems {
					if replayed.enf.Elems[el] != exp {
						t.Errorf("global=%v %s at +%s: element %v expires %v, full path %v", global, a.name, at, el, replayed.enf.Elems[el], exp)
					}
				}
			}
		}
	}
}

func clearReplies(c *Cache) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for _, e := range s.m {
			e.reply.Store(nil)
		}
		s.mu.Unlock()
	}
}

// Another client of the same kind gets the replayed reply and elements of
// its own, and the ledger remembers it: the replay skips the walk, never
// the install or the record.
func TestPreparedReplyInstallsForEachClient(t *testing.T) {
	ce := newClockEnv(t, false)
	devB, devC := netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("192.0.2.12")
	for i, c := range []netip.Addr{devA, devA, devB, devC} {
		ce.now = t0.Add(time.Duration(i) * time.Second)
		resp := ce.h.Resolve(context.Background(), c, query("prod.update.sphere.azure.net.", dns.TypeA, true))
		if len(resp.Answer) != 4 {
			t.Fatalf("%s: %v", c, resp.Answer)
		}
	}
	for _, c := range []netip.Addr{devB, devC} {
		el := ledger.Elem{Client: c, Addr: netip.MustParseAddr("203.0.113.8"), Port: tcp80}
		if !ce.enf.Has(el, ce.now.Add(time.Second)) {
			t.Errorf("no element for %s after a replayed reply", c)
		}
		if got := ce.led.Lookup(netip.MustParseAddr("203.0.113.8"), c); len(got) != 1 || got[0].Name != "prod.update.sphere.azure.net" {
			t.Errorf("ledger for %s: %+v", c, got)
		}
	}
	if n := ce.up.askedFor("prod.update.sphere.azure.net."); n != 1 {
		t.Errorf("upstream asked %d times, want 1", n)
	}
	if s := ce.h.Stats().Allowed.Load(); s != 4 {
		t.Errorf("allowed counted %d times, want 4", s)
	}
}

// A replayed reply that the kernel does not take is not released.
func TestPreparedReplyWithheldWhenNotInstalled(t *testing.T) {
	ce := newClockEnv(t, false)
	for range 2 {
		ce.h.Resolve(context.Background(), devA, query("prod.update.sphere.azure.net.", dns.TypeA, false))
	}
	ce.enf.Set(errors.New("netlink: EPERM"), false)
	ce.now = t0.Add(2 * time.Second)
	resp := ce.h.Resolve(context.Background(), netip.MustParseAddr("192.0.2.11"), query("prod.update.sphere.azure.net.", dns.TypeA, false))
	if resp.Rcode != dns.RcodeServerFailure || len(resp.Answer) != 0 {
		t.Fatalf("got %v, want SERVFAIL without the answer", resp)
	}
}

// Many clients at once on the real UDP server, on cached names: replies
// replayed while others are being prepared and stored are each the right
// one for their query (the race detector watches the shared replies and
// the pooled buffers).
func TestConcurrentReplaysOverUDP(t *testing.T) {
	ce := newClockEnv(t, true)
	addr := freeUDPAddr(t)
	addr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), addr.Port())
	// Loopback clients are served: the test policy's group gets 127.0.0.0/8.
	ce.h.SetPolicy(loopbackPolicy(t))
	s, err := Listen([]netip.AddrPort{addr}, ce.h, 16, TCPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	names := []struct {
		name    string
		qtype   uint16
		answers int
	}{
		{"prod.update.sphere.azure.net.", dns.TypeA, 4},
		{"api.svc.example.com.", dns.TypeHTTPS, 1},
		{"v6.svc.example.com.", dns.TypeAAAA, 1},
	}
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			c := &dns.Client{Timeout: 2 * time.Second}
			for i := range 150 {
				n := names[(g+i)%len(names)]
				m := query(n.name, n.qtype, i%2 == 0)
				m.Question[0].Name = strings.ToUpper(n.name[:1]) + n.name[1:]
				r, _, err := c.Exchange(m, addr.String())
				switch {
				case err != nil:
					errs <- err
					return
				case r.Rcode != dns.RcodeSuccess || len(r.Answer) != n.answers || r.Question[0].Name != m.Question[0].Name ||
					(r.IsEdns0() != nil) != (i%2 == 0):
					errs <- fmt.Errorf("query %s (edns %v): %v", m.Question[0].Name, i%2 == 0, r)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := ce.up.askedFor("prod.update.sphere.azure.net."); n > 8 {
		t.Errorf("upstream asked %d times for a cached name", n)
	}
}

func loopbackPolicy(t *testing.T) *policy.Policy {
	t.Helper()
	g := testPolicy(t).Groups()[0]
	lo := *g
	lo.Prefixes = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	p, err := policy.New([]*policy.Group{&lo})
	if err != nil {
		t.Fatal(err)
	}
	return p
}
