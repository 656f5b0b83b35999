package dnsproxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/enforce"
	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/policy"
)

var (
	t0      = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	devA    = netip.MustParseAddr("192.0.2.10")
	outside = netip.MustParseAddr("198.51.100.7")
	tcp443  = policy.PortRange{Proto: policy.ProtoTCP, Lo: 443, Hi: 443}
	tcp80   = policy.PortRange{Proto: policy.ProtoTCP, Lo: 80, Hi: 80}
)

// fakeUpstream answers from a table of records and remembers every name
// it was asked.
type fakeUpstream struct {
	mu      sync.Mutex
	records map[string][]string // qname → RRs in presentation form
	asked   []string
	err     error
	// wire: reply with the packed bytes too, as the pool does over UDP.
	wire bool
}

func (f *fakeUpstream) Exchange(_ context.Context, q *dns.Msg) (Reply, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, q.Question[0].Name)
	if f.err != nil {
		return Reply{}, f.err
	}
	r := new(dns.Msg)
	r.SetReply(q)
	rrs, ok := f.records[strings.ToLower(q.Question[0].Name)]
	if !ok {
		r.Rcode = dns.RcodeNameError
	}
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			panic(err)
		}
		if strings.HasPrefix(s, ";extra ") {
			continue
		}
		r.Answer = append(r.Answer, rr)
	}
	if extra, ok := f.records["extra:"+strings.ToLower(q.Question[0].Name)]; ok {
		for _, s := range extra {
			rr, _ := dns.NewRR(s)
			r.Extra = append(r.Extra, rr)
		}
	}
	rep := Reply{Msg: r, From: netip.MustParseAddrPort("198.51.100.53:53")}
	if f.wire {
		rep.Wire, _ = r.Pack()
	}
	return rep, nil
}

func (f *fakeUpstream) askedFor(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, a := range f.asked {
		if strings.EqualFold(a, name) {
			n++
		}
	}
	return n
}

func testPolicy(t testing.TB) *policy.Policy {
	t.Helper()
	pat := func(s string) policy.Pattern {
		p, err := policy.ParsePattern(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	g := &policy.Group{Name: "devices", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8:1::/64")},
		Rules: []*policy.Rule{
			{Name: "update", Patterns: []policy.Pattern{pat("prod.update.sphere.azure.net")}, Ports: []policy.PortRange{tcp80, tcp443}},
			{Name: "svc", Patterns: []policy.Pattern{pat("*.svc.example.com")}, Ports: []policy.PortRange{tcp443}},
		}}
	p, err := policy.New([]*policy.Group{g})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func cdnRecords() map[string][]string {
	return map[string][]string{
		"prod.update.sphere.azure.net.": {
			"prod.update.sphere.azure.net. 300 IN CNAME prod-update.azureedge.example.",
			"prod-update.azureedge.example. 60 IN CNAME a1.akamai.example.",
			"a1.akamai.example. 20 IN A 203.0.113.7",
			"a1.akamai.example. 20 IN A 203.0.113.8",
			"unrelated.example. 20 IN A 203.0.113.99",
		},
		"extra:prod.update.sphere.azure.net.": {"glue.example. 20 IN A 203.0.113.98"},
		"api.svc.example.com.": {
			"api.svc.example.com. 7200 IN HTTPS 1 . alpn=h2 ipv4hint=203.0.113.20 ipv6hint=2001:db8:cd::20",
		},
		"long.svc.example.com.":  {"long.svc.example.com. 604800 IN A 203.0.113.30"},
		"v6.svc.example.com.":    {"v6.svc.example.com. 20 IN AAAA 2001:db8:cd::40"},
		"exfil.svc.example.com.": {},
	}
}

type env struct {
	h    *Handler
	up   *fakeUpstream
	enf  *enforce.Fake
	led  *ledger.Ledger
	opts Options
}

func newEnv(t testing.TB, mutate func(*Options)) *env {
	o := Options{DenyRcode: dns.RcodeNameError, MinTTL: time.Minute, MaxTTL: time.Hour, Grace: 30 * time.Second}
	if mutate != nil {
		mutate(&o)
	}
	enf := enforce.NewFake()
	enf.Hold = 50 * time.Millisecond
	e := &env{up: &fakeUpstream{records: cdnRecords()}, enf: enf, led: ledger.New(ledger.Options{}), opts: o}
	e.h = NewHandler(testPolicy(t), e.up, e.led, e.enf, o, slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return t0 })
	return e
}

func query(name string, qtype uint16, edns bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns {
		m.SetEdns0(1232, false)
	}
	return m
}

func ede(m *dns.Msg) string {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				return e.ExtraText
			}
		}
	}
	return ""
}

func TestResolveAllowedInstallsBeforeRelease(t *testing.T) {
	e := newEnv(t, nil)
	req := query("Prod.Update.Sphere.Azure.NET.", dns.TypeA, true)
	resp := e.h.Resolve(context.Background(), devA, req)
	if resp.Rcode != dns.RcodeSuccess || resp.Id != req.Id || resp.Question[0].Name != "Prod.Update.Sphere.Azure.NET." {
		t.Fatalf("reply: %v", resp)
	}
	var got []string
	for _, rr := range resp.Answer {
		got = append(got, rr.Header().Name+" "+dns.TypeToString[rr.Header().Rrtype])
	}
	want := "prod.update.sphere.azure.net. CNAME|prod-update.azureedge.example. CNAME|a1.akamai.example. A|a1.akamai.example. A"
	if strings.Join(got, "|") != want {
		t.Errorf("answer = %s\nwant     %s (off-chain A stripped)", strings.Join(got, "|"), want)
	}
	for _, rr := range resp.Extra {
		if _, ok := rr.(*dns.A); ok {
			t.Errorf("glue A in additional section released: %v", rr)
		}
	}
	// Each address on each of the rule's ports, for this client, living
	// max(ttl 20s, min_ttl 1m) + grace 30s.
	for _, a := range []string{"203.0.113.7", "203.0.113.8"} {
		for _, p := range []policy.PortRange{tcp80, tcp443} {
			el := ledger.Elem{Client: devA, Addr: netip.MustParseAddr(a), Port: p}
			if exp := e.enf.Elems[el]; !exp.Equal(t0.Add(90 * time.Second)) {
				t.Errorf("%v expires %v, want t0+90s", el, exp)
			}
		}
	}
	if len(e.enf.Elems) != 4 {
		t.Errorf("%d elements installed, want 4 (unrelated and glue addresses must not be)", len(e.enf.Elems))
	}
	entries := e.led.Lookup(netip.MustParseAddr("203.0.113.7"), devA)
	if len(entries) != 1 || entries[0].Name != "prod.update.sphere.azure.net" ||
		strings.Join(entries[0].Chain, ",") != "prod-update.azureedge.example,a1.akamai.example" || entries[0].TTL != 20*time.Second {
		t.Errorf("ledger = %+v", entries)
	}
}

func TestResolveOutcomes(t *testing.T) {
	tests := []struct {
		name      string
		mutate    func(*Options)
		setup     func(*env)
		client    netip.Addr
		req       *dns.Msg
		rcode     int
		ede       string
		upstream  int // queries the upstream must have seen for the name
		installed int
	}{
		{name: "denied name never leaves", client: devA, req: query("evil.example.", dns.TypeA, true),
			rcode: dns.RcodeNameError, ede: "fqdngate: name not allowed"},
		{name: "exfiltration in labels", client: devA, req: query("aGVsbG8gd29ybGQ.c2VjcmV0.tunnel.example.", dns.TypeTXT, false),
			rcode: dns.RcodeNameError},
		{name: "deny_response refused", mutate: func(o *Options) { o.DenyRcode = dns.RcodeRefused }, client: devA,
			req: query("evil.example.", dns.TypeA, false), rcode: dns.RcodeRefused},
		{name: "client outside every group", client: outside, req: query("prod.update.sphere.azure.net.", dns.TypeA, true),
			rcode: dns.RcodeRefused, ede: "fqdngate: client not served"},
		{name: "observe answers denied names", mutate: func(o *Options) { o.Observe = true }, client: devA,
			req: query("evil.example.", dns.TypeA, false), rcode: dns.RcodeNameError, upstream: 1},
		{name: "observe still refuses outsiders", mutate: func(o *Options) { o.Observe = true }, client: outside,
			req: query("evil.example.", dns.TypeA, false), rcode: dns.RcodeRefused},
		{name: "kernel refuses: SERVFAIL, not an unenforced answer", setup: func(e *env) { e.enf.Set(errors.New("netlink: EPERM"), false) },
			client: devA, req: query("prod.update.sphere.azure.net.", dns.TypeA, true), rcode: dns.RcodeServerFailure,
			ede: "fqdngate: firewall rule not installed", upstream: 1},
		{name: "kernel too slow: SERVFAIL after hold", setup: func(e *env) { e.enf.Set(nil, true) },
			client: devA, req: query("prod.update.sphere.azure.net.", dns.TypeA, true), rcode: dns.RcodeServerFailure, upstream: 1},
		{name: "upstream down", setup: func(e *env) { e.up.err = errors.New("timeout") }, client: devA,
			req: query("prod.update.sphere.azure.net.", dns.TypeA, true), rcode: dns.RcodeServerFailure, ede: "fqdngate: no upstream answered", upstream: 1},
		{name: "HTTPS hints are learnt, own family in client scope", client: devA, req: query("api.svc.example.com.", dns.TypeHTTPS, false),
			rcode: dns.RcodeSuccess, upstream: 1, installed: 1},
		{name: "HTTPS hints of both families in global scope", mutate: func(o *Options) { o.Global = true }, client: devA,
			req: query("api.svc.example.com.", dns.TypeHTTPS, false), rcode: dns.RcodeSuccess, upstream: 1, installed: 2},
		{name: "allowed NXDOMAIN passes", client: devA, req: query("nothing.svc.example.com.", dns.TypeA, false),
			rcode: dns.RcodeNameError, upstream: 1},
		{name: "class CH refused", client: devA, req: func() *dns.Msg {
			m := query("version.bind.", dns.TypeTXT, false)
			m.Question[0].Qclass = dns.ClassCHAOS
			return m
		}(), rcode: dns.RcodeRefused},
		{name: "ANY not served", client: devA, req: query("prod.update.sphere.azure.net.", dns.TypeANY, false), rcode: dns.RcodeNotImplemented},
		{name: "two questions", client: devA, req: func() *dns.Msg {
			m := query("prod.update.sphere.azure.net.", dns.TypeA, false)
			m.Question = append(m.Question, m.Question[0])
			return m
		}(), rcode: dns.RcodeFormatError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.mutate)
			if tc.setup != nil {
				tc.setup(e)
			}
			resp := e.h.Resolve(context.Background(), tc.client, tc.req)
			if resp.Rcode != tc.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.rcode])
			}
			if tc.ede != "" && ede(resp) != tc.ede {
				t.Errorf("EDE %q, want %q", ede(resp), tc.ede)
			}
			if got := e.up.askedFor(tc.req.Question[0].Name); got != tc.upstream {
				t.Errorf("upstream asked %d times for %s, want %d", got, tc.req.Question[0].Name, tc.upstream)
			}
			if len(e.enf.Elems) != tc.installed {
				t.Errorf("%d elements installed, want %d", len(e.enf.Elems), tc.installed)
			}
			if tc.rcode != dns.RcodeSuccess && len(resp.Answer) > 0 {
				t.Errorf("failed reply carries answers: %v", resp.Answer)
			}
			if tc.installed == 0 && e.led.Stats().Entries != 0 {
				t.Errorf("ledger recorded %d entries for an answer that was not released", e.led.Stats().Entries)
			}
		})
	}
}

func TestTTLClampedForClientAndKernel(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxTTL = 10 * time.Minute })
	resp := e.h.Resolve(context.Background(), devA, query("long.svc.example.com.", dns.TypeA, false))
	if ttl := resp.Answer[0].Header().Ttl; ttl != 600 {
		t.Errorf("client told ttl %d, want 600 (max_ttl)", ttl)
	}
	el := ledger.Elem{Client: devA, Addr: netip.MustParseAddr("203.0.113.30"), Port: tcp443}
	if exp := e.enf.Elems[el]; !exp.Equal(t0.Add(10*time.Minute + 30*time.Second)) {
		t.Errorf("element expires %v, want t0+10m30s", exp)
	}
}

func TestEDNSOnlyWhenClientUsesIt(t *testing.T) {
	e := newEnv(t, nil)
	if r := e.h.Resolve(context.Background(), devA, query("prod.update.sphere.azure.net.", dns.TypeA, false)); r.IsEdns0() != nil {
		t.Error("OPT in reply to a query without EDNS")
	}
	if r := e.h.Resolve(context.Background(), devA, query("prod.update.sphere.azure.net.", dns.TypeA, true)); r.IsEdns0() == nil {
		t.Error("no OPT in reply to an EDNS query")
	}
}

// An IPv4 client cannot be given an IPv6 address in client scope: the
// element would need its IPv6 address, which the query did not show.
func TestOtherFamilyWithheldInClientScope(t *testing.T) {
	e := newEnv(t, nil)
	resp := e.h.Resolve(context.Background(), devA, query("v6.svc.example.com.", dns.TypeAAAA, false))
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 0 || len(e.enf.Elems) != 0 {
		t.Fatalf("v4 client got %v with %d elements, want an empty NOERROR and nothing installed", resp.Answer, len(e.enf.Elems))
	}
	resp = e.h.Resolve(context.Background(), devA, query("api.svc.example.com.", dns.TypeHTTPS, false))
	if h := resp.Answer[0].(*dns.HTTPS).String(); strings.Contains(h, "ipv6hint") || !strings.Contains(h, `ipv4hint="203.0.113.20"`) {
		t.Fatalf("released HTTPS record %q: want the IPv4 hint only", h)
	}
	g := newEnv(t, func(o *Options) { o.Global = true })
	if resp := g.h.Resolve(context.Background(), devA, query("v6.svc.example.com.", dns.TypeAAAA, false)); len(resp.Answer) != 1 {
		t.Fatalf("global scope withheld the AAAA record: %v", resp.Answer)
	}
}

// What one client is withheld must not be withheld from the next: the
// answer is cached before it is stripped for the client that asked, and
// stripping for an IPv4 client must leave the cached answer whole.
func TestStrippingDoesNotChangeTheCachedAnswer(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Cache = NewCache(100) })
	devV6 := netip.MustParseAddr("2001:db8:1::10")
	// Alternating and repeated, so that replies replayed from the cache
	// are checked too: one made for one family is never replayed to the
	// other.
	for _, c := range []netip.Addr{devA, devV6, devA, devV6, devA, devA, devV6, devV6} {
		resp := e.h.Resolve(context.Background(), c, query("v6.svc.example.com.", dns.TypeAAAA, false))
		if want := map[bool]int{true: 0, false: 1}[c.Is4()]; len(resp.Answer) != want {
			t.Fatalf("%s got %v, want %d AAAA", c, resp.Answer, want)
		}
		resp = e.h.Resolve(context.Background(), c, query("api.svc.example.com.", dns.TypeHTTPS, false))
		h := resp.Answer[0].(*dns.HTTPS).String()
		if c.Is4() != !strings.Contains(h, "ipv6hint=\"2001:db8:cd::20\"") || !strings.Contains(h, "alpn") {
			t.Fatalf("%s got HTTPS %q", c, h)
		}
	}
	if len(e.up.asked) != 2 {
		t.Errorf("upstream asked %v, want each name once", e.up.asked)
	}
}

// The cache keeps an upstream's bytes as they came, unless a TTL had to be
// lowered to max_ttl: a cached answer never tells a client more than the
// first one was told.
func TestCachedAnswersKeepTheTTLCap(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Cache = NewCache(100); o.MaxTTL = time.Hour })
	e.up.wire = true
	e.up.records["long.svc.example.com."] = []string{"long.svc.example.com. 7200 IN A 203.0.113.80"}
	e.up.records["short.svc.example.com."] = []string{"short.svc.example.com. 60 IN A 203.0.113.81"}
	for _, tc := range []struct {
		name string
		ttl  uint32
	}{{"long.svc.example.com.", 3600}, {"short.svc.example.com.", 60}} {
		for round := range 2 {
			resp := e.h.Resolve(context.Background(), devA, query(tc.name, dns.TypeA, false))
			if len(resp.Answer) != 1 || resp.Answer[0].Header().Ttl != tc.ttl {
				t.Fatalf("%s round %d: %v, want one A with ttl %d", tc.name, round, resp.Answer, tc.ttl)
			}
		}
		if n := e.up.askedFor(tc.name); n != 1 {
			t.Errorf("%s asked upstream %d times, want 1 (cached)", tc.name, n)
		}
	}
}

// holdingFake is an enforcer that says whether it already holds every
// grant (enforce.Holder), over a Fake that stalls whatever reaches it.
type holdingFake struct {
	*enforce.Fake
	holds bool
}

func (f holdingFake) Holds([]enforce.Grant) bool { return f.holds }

// TestHolderSkipsTheWait: an answer whose elements the enforcer already
// holds is released without reaching it (so without the hold budget's
// timer and wait); one it does not hold waits for the kernel as before,
// here until the budget runs out.
func TestHolderSkipsTheWait(t *testing.T) {
	for _, c := range []struct {
		name  string
		holds bool
		rcode int
		ede   string
	}{
		{"held already", true, dns.RcodeSuccess, ""},
		{"not held", false, dns.RcodeServerFailure, "fqdngate: firewall rule not installed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fake := enforce.NewFake()
			fake.Set(nil, true)
			fake.Hold = 20 * time.Millisecond
			o := Options{DenyRcode: dns.RcodeNameError, MinTTL: time.Minute, MaxTTL: time.Hour, Grace: 30 * time.Second}
			led := ledger.New(ledger.Options{})
			h := NewHandler(testPolicy(t), &fakeUpstream{records: cdnRecords()}, led, holdingFake{fake, c.holds}, o,
				slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return t0 })
			resp := h.Resolve(context.Background(), devA, query("prod.update.sphere.azure.net.", dns.TypeA, true))
			if resp.Rcode != c.rcode || ede(resp) != c.ede {
				t.Fatalf("rcode %s, EDE %q; want %s, %q", dns.RcodeToString[resp.Rcode], ede(resp), dns.RcodeToString[c.rcode], c.ede)
			}
			if got := len(led.Lookup(netip.MustParseAddr("203.0.113.7"), devA)); (got > 0) != c.holds {
				t.Fatalf("ledger entries for the answer's address: %d, want them only when released", got)
			}
		})
	}
}
