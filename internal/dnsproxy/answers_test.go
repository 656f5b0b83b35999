package dnsproxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"slices"
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
	tcp8883 = policy.PortRange{Proto: policy.ProtoTCP, Lo: 8883, Hi: 8883}
	// devB is in the second group of answersPolicy.
	devB = netip.MustParseAddr("192.0.2.200")
)

// answersPolicy has two groups: "open" (192.0.2.0/25) whose rules allow
// private answers or pin the CDN, and "plain" (192.0.2.128/25) with the
// defaults for the same names.
func answersPolicy(t testing.TB) *policy.Policy {
	t.Helper()
	pats := func(ss ...string) []policy.Pattern {
		var out []policy.Pattern
		for _, s := range ss {
			p, err := policy.ParsePattern(s)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, p)
		}
		return out
	}
	open := &policy.Group{Name: "open", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/25")},
		Rules: []*policy.Rule{
			{Name: "privlink", Patterns: pats("mixed.example.com", "hints.example.com"), Ports: []policy.PortRange{tcp8883},
				Answers: policy.AnswerRules{AllowPrivate: true}},
			{Name: "web", Patterns: pats("mixed.example.com", "both.example.com"), Ports: []policy.PortRange{tcp443}},
			{Name: "both-priv", Patterns: pats("both.example.com"), Ports: []policy.PortRange{tcp8883},
				Answers: policy.AnswerRules{AllowPrivate: true}},
			{Name: "pinned", Patterns: pats("*.pin.example.com"), Ports: []policy.PortRange{tcp443},
				Answers: policy.AnswerRules{CNAMEStrict: true, Via: pats("*.edge.example")}},
			{Name: "stale", Patterns: pats("stale.example.com"), Ports: []policy.PortRange{tcp443}},
		}}
	plain := &policy.Group{Name: "plain", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.128/25")},
		Rules: []*policy.Rule{
			{Name: "web", Patterns: pats("mixed.example.com", "hints.example.com", "*.pin.example.com"), Ports: []policy.PortRange{tcp443}},
		}}
	p, err := policy.New([]*policy.Group{open, plain})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func answersRecords() map[string][]string {
	return map[string][]string{
		"mixed.example.com.": {
			"mixed.example.com. 60 IN A 203.0.113.7",
			"mixed.example.com. 60 IN A 10.0.0.1",
			"mixed.example.com. 60 IN A 127.0.0.1",
			"mixed.example.com. 60 IN A 169.254.169.254",
			"mixed.example.com. 60 IN A 100.64.0.9",
		},
		"both.example.com.": {
			"both.example.com. 60 IN A 203.0.113.8",
			"both.example.com. 60 IN A 192.168.1.5",
		},
		"hints.example.com.": {
			"hints.example.com. 60 IN HTTPS 1 . alpn=h2 ipv4hint=203.0.113.20,10.1.2.3",
		},
		"ok.pin.example.com.": {
			"ok.pin.example.com. 60 IN CNAME x.edge.example.",
			"x.edge.example. 60 IN CNAME a1.edge.example.",
			"a1.edge.example. 60 IN A 203.0.113.30",
		},
		"bad.pin.example.com.": {
			"bad.pin.example.com. 60 IN CNAME x.edge.example.",
			"x.edge.example. 60 IN CNAME a1.elsewhere.example.",
			"a1.elsewhere.example. 60 IN A 203.0.113.31",
		},
		"direct.pin.example.com.": {"direct.pin.example.com. 60 IN A 203.0.113.32"},
		"stale.example.com.":      {"stale.example.com. 20 IN A 203.0.113.40"},
	}
}

// clock is a stepped clock for the handler.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) step(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type answersEnv struct {
	h     *Handler
	up    *fakeUpstream
	enf   *enforce.Fake
	led   *ledger.Ledger
	clock *clock
}

func newAnswersEnv(t testing.TB, mutate func(*Options)) *answersEnv {
	t.Helper()
	o := Options{DenyRcode: dns.RcodeNameError, MinTTL: 0, MaxTTL: time.Hour, Grace: 10 * time.Second}
	if mutate != nil {
		mutate(&o)
	}
	e := &answersEnv{up: &fakeUpstream{records: answersRecords()}, enf: enforce.NewFake(),
		led: ledger.New(ledger.Options{}), clock: &clock{now: t0}}
	e.h = NewHandler(answersPolicy(t), e.up, e.led, e.enf, o, slog.New(slog.NewTextHandler(io.Discard, nil)), e.clock.Now)
	return e
}

func answerAddrs(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch v := rr.(type) {
		case *dns.A:
			out = append(out, v.A.String())
		case *dns.AAAA:
			out = append(out, v.AAAA.String())
		case *dns.HTTPS:
			for _, kv := range v.Value {
				if h, ok := kv.(*dns.SVCBIPv4Hint); ok {
					for _, ip := range h.Hint {
						out = append(out, "hint:"+ip.String())
					}
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// elems lists the installed elements as "addr port", sorted.
func (e *answersEnv) elems() []string {
	var out []string
	for el := range e.enf.Elems {
		out = append(out, el.Addr.String()+" "+el.Port.String())
	}
	slices.Sort(out)
	return out
}

func TestPrivateAnswers(t *testing.T) {
	tests := []struct {
		name     string
		client   netip.Addr
		qname    string
		answer   []string
		elems    []string
		withheld uint64
		// rules is what the ledger names for each address.
		rules map[string]string
	}{
		{name: "default withholds every internal address", client: devB, qname: "mixed.example.com.",
			answer: []string{"203.0.113.7"}, elems: []string{"203.0.113.7 tcp/443"}, withheld: 4,
			rules: map[string]string{"203.0.113.7": "web"}},
		{name: "HTTPS hints too", client: devB, qname: "hints.example.com.",
			answer: []string{"hint:203.0.113.20"}, elems: []string{"203.0.113.20 tcp/443"}, withheld: 1},
		{name: "a rule that allows them: internal addresses on its ports only", client: devA, qname: "mixed.example.com.",
			answer: []string{"10.0.0.1", "100.64.0.9", "127.0.0.1", "169.254.169.254", "203.0.113.7"},
			elems: []string{"10.0.0.1 tcp/8883", "100.64.0.9 tcp/8883", "127.0.0.1 tcp/8883", "169.254.169.254 tcp/8883",
				"203.0.113.7 tcp/443", "203.0.113.7 tcp/8883"},
			rules: map[string]string{"203.0.113.7": "privlink,web", "10.0.0.1": "privlink", "127.0.0.1": "privlink"}},
		{name: "hints kept when allowed", client: devA, qname: "hints.example.com.",
			answer: []string{"hint:10.1.2.3", "hint:203.0.113.20"}, elems: []string{"10.1.2.3 tcp/8883", "203.0.113.20 tcp/8883"}},
		{name: "rule order does not matter", client: devA, qname: "both.example.com.",
			answer: []string{"192.168.1.5", "203.0.113.8"},
			elems:  []string{"192.168.1.5 tcp/8883", "203.0.113.8 tcp/443", "203.0.113.8 tcp/8883"},
			rules:  map[string]string{"203.0.113.8": "web,both-priv", "192.168.1.5": "both-priv"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newAnswersEnv(t, nil)
			resp := e.h.Resolve(context.Background(), tc.client, query(tc.qname, typeOf(tc.qname), true))
			if resp.Rcode != dns.RcodeSuccess {
				t.Fatalf("rcode %s", dns.RcodeToString[resp.Rcode])
			}
			if got := answerAddrs(resp); !slices.Equal(got, tc.answer) {
				t.Errorf("answer %v, want %v", got, tc.answer)
			}
			if got := e.elems(); !slices.Equal(got, tc.elems) {
				t.Errorf("installed %v, want %v", got, tc.elems)
			}
			if got := e.h.Stats().Withheld.Load(); got != tc.withheld {
				t.Errorf("withheld %d, want %d", got, tc.withheld)
			}
			for addr, want := range tc.rules {
				entries := e.led.Lookup(netip.MustParseAddr(addr), tc.client)
				if len(entries) != 1 || strings.Join(entries[0].Rules, ",") != want {
					t.Errorf("ledger for %s: %+v, want rules %s", addr, entries, want)
				}
			}
		})
	}
}

func typeOf(qname string) uint16 {
	if strings.HasPrefix(qname, "hints.") {
		return dns.TypeHTTPS
	}
	return dns.TypeA
}

// TestPrivateAnswersReplay: a cached answer's prepared reply, made for a
// client whose rule allowed internal addresses, is not replayed to one
// whose rules withhold them, and the other way round.
func TestPrivateAnswersReplay(t *testing.T) {
	for _, order := range [][]netip.Addr{{devA, devB, devB, devA, devA}, {devB, devA, devA, devB, devB}} {
		e := newAnswersEnv(t, func(o *Options) { o.Cache = NewCache(100) })
		for i, client := range order {
			resp := e.h.Resolve(context.Background(), client, query("mixed.example.com.", dns.TypeA, true))
			got := answerAddrs(resp)
			want := []string{"203.0.113.7"}
			if client == devA {
				want = []string{"10.0.0.1", "100.64.0.9", "127.0.0.1", "169.254.169.254", "203.0.113.7"}
			}
			if !slices.Equal(got, want) {
				t.Errorf("order %v, query %d from %v: answer %v, want %v", order, i, client, got, want)
			}
			for el := range e.enf.Elems {
				if el.Client == devB && isInternal(el.Addr) {
					t.Errorf("query %d: internal %v installed for the withholding client", i, el)
				}
			}
		}
		if n := e.up.askedFor("mixed.example.com."); n != 1 {
			t.Errorf("upstream asked %d times, want 1 (the rest from the cache)", n)
		}
	}
}

func TestCNAMEStrict(t *testing.T) {
	tests := []struct {
		name      string
		observe   bool
		client    netip.Addr
		qname     string
		rcode     int
		ede       string
		answer    []string
		installed int
		decision  string
	}{
		{name: "chain through via", client: devA, qname: "ok.pin.example.com.", rcode: dns.RcodeSuccess,
			answer: []string{"203.0.113.30"}, installed: 1, decision: DecisionAllowed},
		{name: "no chain at all", client: devA, qname: "direct.pin.example.com.", rcode: dns.RcodeSuccess,
			answer: []string{"203.0.113.32"}, installed: 1, decision: DecisionAllowed},
		{name: "chain leaves via: denied, first refused target named", client: devA, qname: "bad.pin.example.com.",
			rcode: dns.RcodeNameError, ede: "fqdngate: CNAME target a1.elsewhere.example. not allowed by the rule's via",
			decision: DecisionCNAMENotVia},
		{name: "observe: answered, nothing installed", observe: true, client: devA, qname: "bad.pin.example.com.",
			rcode: dns.RcodeSuccess, answer: []string{"203.0.113.31"}, decision: DecisionWouldDeny},
		{name: "another group's loose rule grants it", client: devB, qname: "bad.pin.example.com.", rcode: dns.RcodeSuccess,
			answer: []string{"203.0.113.31"}, installed: 1, decision: DecisionAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newAnswersEnv(t, func(o *Options) { o.Observe = tc.observe })
			var out Outcome
			e.h.SetObserver(observerFunc(func(o Outcome) { out = o }))
			resp := e.h.Resolve(context.Background(), tc.client, query(tc.qname, dns.TypeA, true))
			if resp.Rcode != tc.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.rcode])
			}
			if got := ede(resp); got != tc.ede {
				t.Errorf("EDE %q, want %q", got, tc.ede)
			}
			if got := answerAddrs(resp); !slices.Equal(got, tc.answer) {
				t.Errorf("answer %v, want %v", got, tc.answer)
			}
			if len(e.enf.Elems) != tc.installed {
				t.Errorf("%d elements installed, want %d", len(e.enf.Elems), tc.installed)
			}
			if out.Decision != tc.decision {
				t.Errorf("decision %q, want %q", out.Decision, tc.decision)
			}
		})
	}
}

// TestCNAMEStrictReplay: a cached answer another group was allowed is
// still refused to a group whose rule pins the CDN.
func TestCNAMEStrictReplay(t *testing.T) {
	e := newAnswersEnv(t, func(o *Options) { o.Cache = NewCache(100) })
	for i := range 2 {
		if r := e.h.Resolve(context.Background(), devB, query("bad.pin.example.com.", dns.TypeA, true)); r.Rcode != dns.RcodeSuccess {
			t.Fatalf("plain group, query %d: %s", i, dns.RcodeToString[r.Rcode])
		}
	}
	before := len(e.enf.Elems)
	for i := range 2 {
		r := e.h.Resolve(context.Background(), devA, query("bad.pin.example.com.", dns.TypeA, true))
		if r.Rcode != dns.RcodeNameError || len(r.Answer) != 0 {
			t.Fatalf("pinned group, query %d from the cache: %s with %d records, want NXDOMAIN", i, dns.RcodeToString[r.Rcode], len(r.Answer))
		}
	}
	if len(e.enf.Elems) != before {
		t.Errorf("elements %d → %d: a refused answer was installed", before, len(e.enf.Elems))
	}
	if n := e.up.askedFor("bad.pin.example.com."); n != 1 {
		t.Errorf("upstream asked %d times, want 1", n)
	}
}

type observerFunc func(Outcome)

func (f observerFunc) Query(o Outcome) { f(o) }

func staleEDECode(m *dns.Msg) (uint16, bool) {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				return e.InfoCode, true
			}
		}
	}
	return 0, false
}

func TestServeStale(t *testing.T) {
	down := errors.New("no upstream answered")
	el := ledger.Elem{Client: devA, Addr: netip.MustParseAddr("203.0.113.40"), Port: tcp443}
	tests := []struct {
		name   string
		window time.Duration
		// after the first answer (TTL 20s): how long until the second
		// query, and whether the upstream is down then.
		wait  time.Duration
		down  bool
		rcode int
		ttl   uint32
		stale bool
	}{
		{name: "upstream down past expiry: stale answer", window: time.Hour, wait: 25 * time.Second, down: true,
			rcode: dns.RcodeSuccess, ttl: StaleTTL, stale: true},
		{name: "serve_stale off: SERVFAIL", window: 0, wait: 25 * time.Second, down: true, rcode: dns.RcodeServerFailure},
		{name: "past the window: SERVFAIL", window: time.Minute, wait: 20*time.Second + time.Minute, down: true, rcode: dns.RcodeServerFailure},
		{name: "upstream up: a fresh answer, never the stale one", window: time.Hour, wait: 25 * time.Second,
			rcode: dns.RcodeSuccess, ttl: 20},
		{name: "upstream down before expiry: the live cached answer", window: time.Hour, wait: 5 * time.Second, down: true,
			rcode: dns.RcodeSuccess, ttl: 15},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newAnswersEnv(t, func(o *Options) { o.Cache, o.ServeStale = NewCache(100), tc.window })
			var out Outcome
			e.h.SetObserver(observerFunc(func(o Outcome) { out = o }))
			if r := e.h.Resolve(context.Background(), devA, query("stale.example.com.", dns.TypeA, true)); r.Rcode != dns.RcodeSuccess {
				t.Fatalf("first answer: %s", dns.RcodeToString[r.Rcode])
			}
			e.clock.step(tc.wait)
			if tc.down {
				e.up.mu.Lock()
				e.up.err = down
				e.up.mu.Unlock()
			}
			r := e.h.Resolve(context.Background(), devA, query("stale.example.com.", dns.TypeA, true))
			if r.Rcode != tc.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
			}
			code, hasEDE := staleEDECode(r)
			if tc.stale != (hasEDE && code == dns.ExtendedErrorCodeStaleAnswer) || out.Stale != tc.stale {
				t.Errorf("EDE %d (%v), outcome stale %v; want stale %v", code, hasEDE, out.Stale, tc.stale)
			}
			if tc.rcode != dns.RcodeSuccess {
				return
			}
			if len(r.Answer) != 1 || r.Answer[0].Header().Ttl != tc.ttl {
				t.Fatalf("answer %v, want TTL %d", r.Answer, tc.ttl)
			}
			// Installed like any answer: TTL + grace from now.
			want := e.clock.Now().Add(time.Duration(tc.ttl)*time.Second + 10*time.Second)
			if got := e.enf.Elems[el]; !got.Equal(want) {
				t.Errorf("element expires %v, want %v", got, want)
			}
			if entries := e.led.Lookup(el.Addr, devA); len(entries) != 1 || !entries[0].Expires.Equal(want) {
				t.Errorf("ledger %+v, want expiry %v", entries, want)
			}
		})
	}
}

// TestServeStaleNotCachedAsFresh: once the upstream is back, the stale
// answer is not what the cache holds.
func TestServeStaleNotCachedAsFresh(t *testing.T) {
	e := newAnswersEnv(t, func(o *Options) { o.Cache, o.ServeStale = NewCache(100), time.Hour })
	ctx := context.Background()
	e.h.Resolve(ctx, devA, query("stale.example.com.", dns.TypeA, true))
	e.clock.step(25 * time.Second)
	e.up.mu.Lock()
	e.up.err = errors.New("down")
	e.up.mu.Unlock()
	if r := e.h.Resolve(ctx, devA, query("stale.example.com.", dns.TypeA, true)); r.Answer[0].Header().Ttl != StaleTTL {
		t.Fatalf("not stale: %v", r)
	}
	e.up.mu.Lock()
	e.up.err = nil
	e.up.mu.Unlock()
	r := e.h.Resolve(ctx, devA, query("stale.example.com.", dns.TypeA, true))
	if _, hasEDE := staleEDECode(r); hasEDE || r.Answer[0].Header().Ttl != 20 {
		t.Errorf("after recovery: %v, want the upstream's fresh answer", r)
	}
	if n := e.up.askedFor("stale.example.com."); n != 3 {
		t.Errorf("upstream asked %d times, want 3", n)
	}
}
