package clientlimit

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

var (
	t0   = time.Date(2026, 12, 4, 2, 0, 0, 0, time.UTC)
	devA = netip.MustParseAddr("192.0.2.10")
	devB = netip.MustParseAddr("192.0.2.11")
)

// step is one query: at t0+at, from client; done gives back the ticket
// of the step with that index first (in-flight queries answered).
type step struct {
	at     time.Duration
	client netip.Addr
	want   Limit
	done   []int
}

func TestAdmit(t *testing.T) {
	burst := func(client netip.Addr, at time.Duration, n int, want Limit) []step {
		out := make([]step, n)
		for i := range out {
			out[i] = step{at: at, client: client, want: want}
		}
		return out
	}
	cat := func(parts ...[]step) []step {
		var out []step
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	for _, c := range []struct {
		name   string
		limits Limits
		steps  []step
	}{
		{"qps: a burst of one second's worth, then one per 1/qps", Limits{QPS: 10}, cat(
			burst(devA, 0, 10, ""),
			burst(devA, 0, 1, LimitQPS),
			burst(devA, 100*time.Millisecond, 1, ""),
			burst(devA, 100*time.Millisecond, 1, LimitQPS),
			burst(devA, 2*time.Second, 10, ""),
			burst(devA, 2*time.Second, 1, LimitQPS),
		)},
		{"qps is per client", Limits{QPS: 2}, cat(
			burst(devA, 0, 2, ""),
			burst(devA, 0, 1, LimitQPS),
			burst(devB, 0, 2, ""),
			burst(devB, 0, 1, LimitQPS),
		)},
		{"inflight: refused while at the limit, admitted once one is answered", Limits{Inflight: 2}, []step{
			{client: devA}, {client: devA}, {client: devA, want: LimitInflight},
			{client: devB},
			{client: devA, done: []int{0}},
			{client: devA, want: LimitInflight},
		}},
		{"a query refused for inflight spends no token", Limits{QPS: 2, Inflight: 1}, []step{
			{client: devA}, {client: devA, want: LimitInflight}, {client: devA, want: LimitInflight},
			{client: devA, done: []int{0}},
			{client: devA, want: LimitInflight},
			{client: devA, done: []int{3}, want: LimitQPS},
		}},
		{"a group without limits", Limits{}, burst(devA, 0, 1000, "")},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := New(map[string]Limits{"g": c.limits})
			tickets := make([]Ticket, len(c.steps))
			for i, s := range c.steps {
				for _, d := range s.done {
					l.Done(tickets[d])
					tickets[d] = nil
				}
				tk, got := l.Admit(t0.Add(s.at), s.client, "g")
				if got != s.want {
					t.Fatalf("step %d (%s at +%s): %q, want %q", i, s.client, s.at, got, s.want)
				}
				tickets[i] = tk
			}
		})
	}
}

func TestRefusedCountedByGroupAndLimit(t *testing.T) {
	l := New(map[string]Limits{"a": {QPS: 1}, "b": {Inflight: 1}, "free": {}})
	l.Admit(t0, devA, "a")
	l.Admit(t0, devA, "a")
	l.Admit(t0, devA, "a")
	l.Admit(t0, devB, "b")
	l.Admit(t0, devB, "b")
	l.Admit(t0, devB, "free")
	l.Admit(t0, devB, "unknown")
	got := fmt.Sprint(l.Refused())
	if want := "map[a:map[inflight:0 qps:2] b:map[inflight:1 qps:0]]"; got != want {
		t.Fatalf("refused %s, want %s", got, want)
	}
	// A reload keeps the counts and applies the new limits.
	l.SetLimits(map[string]Limits{"a": {QPS: 5}})
	for i := range 5 {
		if _, lim := l.Admit(t0, devA, "a"); lim != "" {
			t.Fatalf("query %d after the reload refused (%s): the new bucket holds 5", i, lim)
		}
	}
	if _, lim := l.Admit(t0, devB, "b"); lim != "" {
		t.Fatalf("group b has no limits after the reload, refused %s", lim)
	}
	if got := l.Refused()["b"][LimitInflight]; got != 1 {
		t.Fatalf("b's count after the reload %d, want 1", got)
	}
}

// addr is the i-th address of a /64 that rotates its source addresses.
func addr(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 12: byte(i >> 24), 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
}

// TestTableBoundAndOverflow: a flood of new source addresses fills the
// table up to its bound and no further; beyond it the new ones share the
// group's one overflow bucket, while the clients tracked before keep
// their own; idle clients are forgotten and the room is used again.
func TestTableBoundAndOverflow(t *testing.T) {
	const maxClients = 64
	l := newLimiter(map[string]Limits{"g": {QPS: 1, Inflight: 4}}, maxClients)
	// devA is tracked before the flood, and keeps asking.
	if tk, lim := l.Admit(t0, devA, "g"); lim != "" {
		t.Fatal(lim)
	} else {
		l.Done(tk)
	}
	admitted := 0
	for i := range 10_000 {
		tk, lim := l.Admit(t0, addr(i), "g")
		if lim == "" {
			admitted++
		}
		l.Done(tk)
		if n := l.Tracked(); n > maxClients {
			t.Fatalf("after %d new clients: %d tracked, bound %d", i+1, n, maxClients)
		}
	}
	tracked := l.Tracked()
	if tracked < maxClients/2 {
		t.Fatalf("only %d of %d tracked: the shards fill unevenly", tracked, maxClients)
	}
	// Every tracked newcomer got its own token; all the others shared one.
	if want := tracked - 1 + 1; admitted != want {
		t.Fatalf("%d of the flood admitted, want %d (one each for %d tracked, one for the overflow)", admitted, want, tracked-1)
	}
	// devA is still tracked, with its own bucket: refilled after a second.
	if tk, lim := l.Admit(t0.Add(time.Second), devA, "g"); lim != "" {
		t.Fatalf("devA refused %s while the flood shares the overflow", lim)
	} else {
		l.Done(tk)
	}
	// More newcomers while the flood is active: the overflow bucket.
	g := (*l.groups.Load())["g"]
	for i := range 100 {
		if c := l.lookup(t0.Add(time.Second), addr(20_000+i), g); c != g.overflow {
			t.Fatalf("newcomer %d tracked on its own while the table is full of active clients", i)
		}
	}

	// A minute later the flood is idle: a new client's shard is swept,
	// and it is tracked with a bucket of its own.
	later := t0.Add(time.Second + IdleAfter)
	newcomer := netip.MustParseAddr("192.0.2.99")
	if c := l.lookup(later, newcomer, g); c == g.overflow {
		t.Fatal("the newcomer shares the overflow bucket although the flood is idle")
	}
	// Asking from every shard sweeps them all: only the clients seen in
	// the last minute stay (devA at +1s, the newcomer).
	for i := range 1000 {
		l.lookup(later, addr(30_000+i), g)
	}
	if n := l.Tracked(); n > maxClients {
		t.Fatalf("%d tracked, bound %d", n, maxClients)
	}
	l2 := newLimiter(map[string]Limits{"g": {QPS: 1}}, maxClients)
	for i := range 10_000 {
		l2.Admit(t0, addr(i), "g")
	}
	l2.Admit(t0.Add(IdleAfter), devA, "g") // devA's shard is swept now
	for i := range 200 {                   // and every other one
		l2.Admit(t0.Add(IdleAfter+time.Second), addr(50_000+i), "g")
	}
	if n := l2.Tracked(); n > maxClients || n == 0 {
		t.Fatalf("after the sweep %d tracked", n)
	}
	for i := range 10_000 {
		if c := l2.peek(addr(i)); c != nil {
			t.Fatalf("flood client %d still tracked after %s idle", i, IdleAfter)
		}
	}
}

// peek is the tracked entry of addr, nil when there is none.
func (l *Limiter) peek(addr netip.Addr) *client {
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		c := sh.clients[addr.As16()]
		sh.mu.Unlock()
		if c != nil {
			return c
		}
	}
	return nil
}

// TestInflightNotForgotten: a client with a query in flight is not idle,
// however long the query takes.
func TestInflightNotForgotten(t *testing.T) {
	l := newLimiter(map[string]Limits{"g": {Inflight: 1}}, shards)
	tk, _ := l.Admit(t0, devA, "g")
	for i := range 1000 {
		l.Admit(t0.Add(2*IdleAfter), addr(i), "g")
	}
	if l.peek(devA) == nil {
		t.Fatal("devA was forgotten with a query in flight")
	}
	if _, lim := l.Admit(t0.Add(2*IdleAfter), devA, "g"); lim != LimitInflight {
		t.Fatalf("devA's second query: %q, want inflight (its first is still out)", lim)
	}
	l.Done(tk)
	if _, lim := l.Admit(t0.Add(2*IdleAfter), devA, "g"); lim != "" {
		t.Fatalf("devA after its query was answered: %q", lim)
	}
}

func TestConcurrentAdmit(t *testing.T) {
	l := newLimiter(map[string]Limits{"g": {QPS: 1000, Inflight: 8}}, 256)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				now := t0.Add(time.Duration(i) * time.Millisecond)
				tk, _ := l.Admit(now, addr(w*1000+i%600), "g")
				l.Done(tk)
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			l.SetLimits(map[string]Limits{"g": {QPS: 500, Inflight: 4}})
		}
	})
	wg.Wait()
	if n := l.Tracked(); n > 256 {
		t.Fatalf("%d tracked, bound 256", n)
	}
}

func BenchmarkAdmit(b *testing.B) {
	l := New(map[string]Limits{"g": {QPS: 1 << 30, Inflight: 1 << 20}})
	clients := make([]netip.Addr, 1024)
	for i := range clients {
		clients[i] = addr(i)
	}
	now := t0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tk, _ := l.Admit(now, clients[i&1023], "g")
		l.Done(tk)
	}
}
