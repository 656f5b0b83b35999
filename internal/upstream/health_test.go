package upstream

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// steps is a probe clock the test advances: each wait the prober asks
// for is sent on asked, and ends when the test calls step.
type steps struct {
	asked chan time.Duration
	fire  chan time.Time
}

func newSteps() *steps {
	return &steps{asked: make(chan time.Duration, 16), fire: make(chan time.Time)}
}

func (s *steps) after(d time.Duration) <-chan time.Time {
	s.asked <- d
	return s.fire
}

// next waits for the prober to ask for a wait and returns its length.
func (s *steps) next(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-s.asked:
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("the prober asked for no wait")
		return 0
	}
}

func (s *steps) step() { s.fire <- time.Now() }

// muteable answers unless muted; muted it stays silent (a timeout).
func muteable(t *testing.T) (netip.AddrPort, *atomic.Bool, *atomic.Int32) {
	var muted atomic.Bool
	var seen atomic.Int32
	ap := startRaw(t, func(pc net.PacketConn, from net.Addr, q *dns.Msg) {
		seen.Add(1)
		if muted.Load() {
			return
		}
		m := new(dns.Msg)
		m.SetReply(q)
		if q.Question[0].Qtype == dns.TypeA {
			rr, _ := dns.NewRR(q.Question[0].Name + " 20 IN A 203.0.113.7")
			m.Answer = append(m.Answer, rr)
		}
		b, _ := m.Pack()
		_, _ = pc.WriteTo(b, from)
	})
	return ap, &muted, &seen
}

// TestHealth: an upstream that stops answering is marked down after
// FailuresToDown failures and skipped; its prober backs off
// exponentially up to the bound and marks it up when it answers again.
func TestHealth(t *testing.T) {
	flaky, muted, seen := muteable(t)
	good := startUpstream(t, answer)
	clock := newSteps()
	rec := newRecorder()
	p := newPool(t, plain(flaky, good), Options{Timeout: 50 * time.Millisecond, Observer: rec, after: clock.after})
	if !rec.isUp(flaky.String()) {
		t.Fatal("upstreams are not reported up at start")
	}
	muted.Store(true)
	// Round robin: every other query starts at flaky, fails over.
	for i := 0; !p.proxies[0].Down(); i++ {
		if _, err := p.Exchange(context.Background(), aQuery("x.example.")); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		if i > 2*FailuresToDown {
			t.Fatalf("not down after %d queries", i)
		}
	}
	if rec.get(func(r *recorder) int { return r.errors[flaky.String()] }) != FailuresToDown {
		t.Errorf("down after %d failures, want %d", rec.get(func(r *recorder) int { return r.errors[flaky.String()] }), FailuresToDown)
	}
	if rec.isUp(flaky.String()) {
		t.Error("down not reported")
	}
	// Skipped: no query asks it while it is down.
	before := seen.Load()
	for i := range 10 {
		if _, err := p.Exchange(context.Background(), aQuery("x.example.")); err != nil {
			t.Fatalf("query %d while down: %v", i, err)
		}
	}
	if seen.Load() != before {
		t.Errorf("a down upstream was asked %d times", seen.Load()-before)
	}
	// The probe schedule doubles and is bounded.
	want := ProbeMinBackoff
	for range 10 {
		if d := clock.next(t); d != want {
			t.Fatalf("probe wait %s, want %s", d, want)
		}
		n := seen.Load()
		clock.step()
		waitFor(t, "the probe", func() bool { return seen.Load() > n })
		want = min(2*want, ProbeMaxBackoff)
	}
	if want != ProbeMaxBackoff {
		t.Fatalf("backoff %s never reached the bound", want)
	}
	// Back: the next probe marks it up, and queries reach it again.
	muted.Store(false)
	clock.next(t)
	clock.step()
	waitFor(t, "up again", func() bool { return !p.proxies[0].Down() })
	before = seen.Load()
	for range 2 {
		if _, err := p.Exchange(context.Background(), aQuery("x.example.")); err != nil {
			t.Fatal(err)
		}
	}
	if seen.Load() == before {
		t.Error("not asked after it came back")
	}
	if !rec.isUp(flaky.String()) {
		t.Error("up not reported")
	}
}

// TestAllDownStillAsked: with every upstream down a query still tries
// them, and an answer marks its upstream up.
func TestAllDownStillAsked(t *testing.T) {
	a, mutedA, _ := muteable(t)
	b, mutedB, _ := muteable(t)
	clock := newSteps()
	p := newPool(t, plain(a, b), Options{Timeout: 50 * time.Millisecond, after: clock.after})
	mutedA.Store(true)
	mutedB.Store(true)
	for !p.proxies[0].Down() || !p.proxies[1].Down() {
		if _, err := p.Exchange(context.Background(), aQuery("x.example.")); err == nil {
			t.Fatal("an answer from a muted upstream")
		}
	}
	mutedB.Store(false)
	rep, err := p.Exchange(context.Background(), aQuery("x.example."))
	if err != nil {
		t.Fatalf("all down: %v", err)
	}
	if rep.From != b || p.proxies[1].Down() {
		t.Errorf("from %v, down %v; want b, up", rep.From, p.proxies[1].Down())
	}
}

// TestCloseStopsProbers: Close returns with a prober waiting.
func TestCloseStopsProbers(t *testing.T) {
	a, muted, _ := muteable(t)
	clock := newSteps()
	p, err := New(plain(a), Options{Timeout: 50 * time.Millisecond, after: clock.after})
	if err != nil {
		t.Fatal(err)
	}
	muted.Store(true)
	for !p.proxies[0].Down() {
		_, _ = p.Exchange(context.Background(), aQuery("x.example."))
	}
	clock.next(t)
	done := make(chan struct{})
	go func() { p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not stop the prober")
	}
}
