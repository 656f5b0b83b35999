package upstream

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func newPool(t *testing.T, specs []Spec, o Options) *Pool {
	t.Helper()
	if o.Timeout == 0 {
		o.Timeout = time.Second
	}
	p, err := New(specs, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func TestPoolFailoverAndTCPRetry(t *testing.T) {
	var udpSeen, tcpSeen atomic.Int32
	good := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			udpSeen.Add(1)
			m.Truncated = true
		} else {
			tcpSeen.Add(1)
			rr, _ := dns.NewRR(r.Question[0].Name + " 20 IN A 203.0.113.7")
			m.Answer = append(m.Answer, rr)
		}
		_ = w.WriteMsg(m)
	})
	// A port nobody listens on: ICMP unreachable, a quick error.
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	dead := netip.MustParseAddrPort(pc.LocalAddr().String())
	pc.Close()

	p := newPool(t, plain(dead, good), Options{CaseRandomization: true})
	for i := range 4 { // every starting position reaches the good upstream
		rep, err := p.Exchange(context.Background(), aQuery("x.example."))
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if rep.From != good || len(rep.Msg.Answer) != 1 {
			t.Fatalf("round %d: from %v answer %v", i, rep.From, rep.Msg.Answer)
		}
		if rep.Wire != nil {
			t.Fatalf("round %d: a reply that came over TCP has UDP bytes", i)
		}
	}
	if udpSeen.Load() != 4 || tcpSeen.Load() != 4 {
		t.Errorf("udp %d tcp %d, want 4 each (truncated UDP retried over TCP)", udpSeen.Load(), tcpSeen.Load())
	}
}

// TestPoolSkipsForgedReplies: before each real answer the upstream's
// port sends every kind of wrong reply; the exchange skips them (counted
// by reason) and returns the real one.
func TestPoolSkipsForgedReplies(t *testing.T) {
	forge := func(q *dns.Msg, f func(m *dns.Msg)) []byte {
		m := new(dns.Msg)
		m.SetReply(q)
		rr, _ := dns.NewRR(q.Question[0].Name + " 20 IN A 203.0.113.66")
		m.Answer = append(m.Answer, rr)
		f(m)
		b, _ := m.Pack()
		return b
	}
	forgeries := []struct {
		reason string
		f      func(m *dns.Msg)
	}{
		{SkipID, func(m *dns.Msg) { m.Id++ }},
		{SkipQR, func(m *dns.Msg) { m.Response = false }},
		{SkipOpcode, func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }},
		{SkipRcode, func(m *dns.Msg) { m.Rcode = dns.RcodeNotAuth }},
		{SkipQuestion, func(m *dns.Msg) { m.Question[0].Name = "other.example." }},
		{SkipQuestion, func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAAAA }},
		{SkipQuestion, func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }},
		{SkipQuestion, func(m *dns.Msg) { m.Question = nil }},
		{SkipCase, func(m *dns.Msg) { m.Question[0].Name = strings.ToUpper(m.Question[0].Name) }},
	}
	up := startRaw(t, func(pc net.PacketConn, from net.Addr, q *dns.Msg) {
		for _, fg := range forgeries {
			_, _ = pc.WriteTo(forge(q, fg.f), from)
		}
		_, _ = pc.WriteTo([]byte{1, 2, 3}, from) // not DNS
		real := new(dns.Msg)
		real.SetReply(q)
		rr, _ := dns.NewRR(q.Question[0].Name + " 20 IN A 203.0.113.7")
		real.Answer = append(real.Answer, rr)
		b, _ := real.Pack()
		_, _ = pc.WriteTo(b, from)
	})
	rec := newRecorder()
	p := newPool(t, plain(up), Options{CaseRandomization: true, Observer: rec})
	q := aQuery("www.example.com.")
	rep, err := p.Exchange(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := rep.Msg.Answer[0].(*dns.A); !ok || a.A.String() != "203.0.113.7" {
		t.Fatalf("answer %v, want the real one", rep.Msg.Answer)
	}
	label := up.String()
	want := map[string]int{}
	for _, fg := range forgeries {
		want[label+"/"+fg.reason]++
	}
	want[label+"/"+SkipMalformed]++
	for k, n := range want {
		if got := rec.get(func(r *recorder) int { return r.skipped[k] }); got != n {
			t.Errorf("skipped %s: %d, want %d", k, got, n)
		}
	}
	// The randomised case never leaks out: question, owner and wire are
	// as asked.
	if q.Question[0].Name != "www.example.com." || rep.Msg.Question[0].Name != "www.example.com." ||
		rep.Msg.Answer[0].Header().Name != "www.example.com." {
		t.Errorf("case leaked: query %q reply %q owner %q", q.Question[0].Name, rep.Msg.Question[0].Name, rep.Msg.Answer[0].Header().Name)
	}
	w := new(dns.Msg)
	if err := w.Unpack(rep.Wire); err != nil || w.Question[0].Name != "www.example.com." {
		t.Errorf("wire question %v (%v)", w.Question, err)
	}
}

// TestPoolCaseRandomization: the name goes out in random case; an
// upstream that answers in lower case fails with an error that names the
// setting, and works with it off.
func TestPoolCaseRandomization(t *testing.T) {
	var mixed atomic.Int32
	lower := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		if hasLetterUpper(r.Question[0].Name) {
			mixed.Add(1)
		}
		r.Question[0].Name = strings.ToLower(r.Question[0].Name)
		answer(w, r)
	})
	p := newPool(t, plain(lower), Options{CaseRandomization: true, Timeout: 200 * time.Millisecond})
	_, err := p.Exchange(context.Background(), aQuery("randomised-case.example.com."))
	if err == nil || !strings.Contains(err.Error(), "upstream_case_randomization: false") {
		t.Fatalf("error %v, want one naming upstream_case_randomization", err)
	}
	if mixed.Load() == 0 {
		t.Error("the query name went out in lower case")
	}
	p = newPool(t, plain(lower), Options{CaseRandomization: false})
	mixed.Store(0)
	if _, err := p.Exchange(context.Background(), aQuery("randomised-case.example.com.")); err != nil {
		t.Fatal(err)
	}
	if mixed.Load() != 0 {
		t.Error("case randomised while off")
	}
}

// TestPoolRcodeFailover: SERVFAIL and REFUSED try the next upstream; when
// all fail, the error says why for each.
func TestPoolRcodeFailover(t *testing.T) {
	rcode := func(code int) dns.HandlerFunc {
		return func(w dns.ResponseWriter, r *dns.Msg) {
			m := new(dns.Msg)
			m.SetRcode(r, code)
			_ = w.WriteMsg(m)
		}
	}
	servfail := startUpstream(t, rcode(dns.RcodeServerFailure))
	refused := startUpstream(t, rcode(dns.RcodeRefused))
	nx := startUpstream(t, rcode(dns.RcodeNameError))
	good := startUpstream(t, answer)
	for _, tc := range []struct {
		name  string
		ups   []netip.AddrPort
		from  netip.AddrPort
		rcode int
		errs  []string
	}{
		{"servfail then refused then answer", []netip.AddrPort{servfail, refused, good}, good, dns.RcodeSuccess, nil},
		{"nxdomain is an answer", []netip.AddrPort{nx, good}, nx, dns.RcodeNameError, nil},
		{"all fail", []netip.AddrPort{servfail, refused}, netip.AddrPort{}, 0,
			[]string{servfail.String() + ": answered SERVFAIL", refused.String() + ": answered REFUSED"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// In configuration order: the first query starts at the
			// first upstream.
			p := newPool(t, plain(tc.ups...), Options{CaseRandomization: true, Policy: &fixedOrder{}})
			rep, err := p.Exchange(context.Background(), aQuery("x.example."))
			if tc.errs != nil {
				if err == nil {
					t.Fatal("no error")
				}
				for _, e := range tc.errs {
					if !strings.Contains(err.Error(), e) {
						t.Errorf("error %q does not say %q", err, e)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rep.From != tc.from || rep.Msg.Rcode != tc.rcode {
				t.Errorf("from %v rcode %d, want %v %d", rep.From, rep.Msg.Rcode, tc.from, tc.rcode)
			}
		})
	}
}

// fixedOrder tries the upstreams in configuration order.
type fixedOrder struct{}

func (fixedOrder) Order(dst, ps []*Proxy) []*Proxy { return append(dst, ps...) }

// TestPoolOverallDeadline: the query's deadline ends it even when the
// per-attempt bound would allow more attempts; upstreams after it are not
// asked.
func TestPoolOverallDeadline(t *testing.T) {
	var asked [3]atomic.Int32
	var ups []netip.AddrPort
	for i := range asked {
		ups = append(ups, startRaw(t, func(net.PacketConn, net.Addr, *dns.Msg) { asked[i].Add(1) }))
	}
	p := newPool(t, plain(ups...), Options{Timeout: 10 * time.Second, QueryTimeout: 100 * time.Millisecond, Policy: fixedOrder{}})
	_, err := p.Exchange(context.Background(), aQuery("x.example."))
	if err == nil || !strings.Contains(err.Error(), "not asked: the query's deadline passed") {
		t.Fatalf("error %v, want the later upstreams not asked", err)
	}
	waitFor(t, "the first upstream to see the query", func() bool { return asked[0].Load() == 1 })
	if asked[1].Load() != 0 || asked[2].Load() != 0 {
		t.Errorf("asked %d %d after the deadline", asked[1].Load(), asked[2].Load())
	}
}
