package ledger

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// TestFairEviction: who loses an entry when a cap is reached (quota.go).
// Each case records answers of one address each, in order, one second of
// expiry apart, then checks what every client holds and whom the
// evictions' revocations name.
func TestFairEviction(t *testing.T) {
	devC := netip.MustParseAddr("192.0.2.12")
	type rec struct {
		client netip.Addr
		n      int // answers, each a new name and address
		// expired records them already expired at the time of the next.
		expired bool
	}
	for _, c := range []struct {
		name                     string
		maxEntries, maxPerClient int
		recs                     []rec
		want                     map[netip.Addr]int
		// revoked is whose elements the evictions revoked, and how many.
		revoked                      map[netip.Addr]int
		perClient, global, collected uint64
	}{
		{
			name: "a client at its quota evicts only its own", maxEntries: 100, maxPerClient: 4,
			recs:      []rec{{client: devB, n: 2}, {client: devA, n: 10}, {client: devB, n: 1}},
			want:      map[netip.Addr]int{devA: 4, devB: 3},
			revoked:   map[netip.Addr]int{devA: 6 * 2}, // two ports each
			perClient: 6,
		},
		{
			name: "the global cap evicts from the client holding the most", maxEntries: 10, maxPerClient: 6,
			recs:    []rec{{client: devA, n: 6}, {client: devB, n: 3}, {client: devC, n: 3}},
			want:    map[netip.Addr]int{devA: 4, devB: 3, devC: 3},
			revoked: map[netip.Addr]int{devA: 2 * 2},
			global:  2,
		},
		{
			name: "without a quota the biggest client still pays for the global cap", maxEntries: 10,
			recs:    []rec{{client: devB, n: 3}, {client: devA, n: 50}},
			want:    map[netip.Addr]int{devA: 7, devB: 3},
			revoked: map[netip.Addr]int{devA: 43 * 2},
			global:  43,
		},
		{
			name: "the global cap takes an expired entry first, whoever holds it", maxEntries: 4, maxPerClient: 3,
			recs:    []rec{{client: devB, n: 1, expired: true}, {client: devA, n: 3}, {client: devC, n: 1}},
			want:    map[netip.Addr]int{devA: 3, devC: 1},
			revoked: map[netip.Addr]int{},
			global:  1,
		},
		{
			name: "a quota at max_entries is no quota", maxEntries: 5, maxPerClient: 5,
			recs:   []rec{{client: devA, n: 7}},
			want:   map[netip.Addr]int{devA: 5},
			global: 2, revoked: map[netip.Addr]int{devA: 2 * 2},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := New(Options{MaxEntries: c.maxEntries, MaxPerClient: c.maxPerClient})
			now, k := t0, 0
			revoked := map[netip.Addr]int{}
			for _, r := range c.recs {
				for range r.n {
					k++
					life := time.Hour + time.Duration(k)*time.Second
					if r.expired {
						life = time.Second
					}
					a := answer(r.client, fmt.Sprintf("n%d.example.com", k), now.Add(life), fmt.Sprintf("2001:db8:cd::%x", k))
					for _, e := range l.Record(now, a) {
						revoked[e.Client]++
					}
				}
				if r.expired {
					now = now.Add(time.Minute)
				}
			}
			for _, cl := range []netip.Addr{devA, devB, devC} {
				if got := l.ClientEntries(cl); got != c.want[cl] {
					t.Errorf("%s holds %d entries, want %d", cl, got, c.want[cl])
				}
			}
			if fmt.Sprint(revoked) != fmt.Sprint(c.revoked) {
				t.Errorf("revoked elements by client %v, want %v", revoked, c.revoked)
			}
			if s := l.Stats(); s.EvictedPerClient != c.perClient || s.EvictedGlobal != c.global {
				t.Errorf("evictions per client %d, global %d; want %d, %d", s.EvictedPerClient, s.EvictedGlobal, c.perClient, c.global)
			}
			checkInvariants(t, l)
		})
	}
}

// TestAnswerLargerThanQuota: an answer with more addresses than the
// client's quota keeps them all (the client was told them all); the
// client's next answer brings it back within its quota.
func TestAnswerLargerThanQuota(t *testing.T) {
	l := New(Options{MaxEntries: 100, MaxPerClient: 2})
	if r := l.Record(t0, answer(devA, "big.example.com", t0.Add(time.Hour), "203.0.113.1", "203.0.113.2", "203.0.113.3")); len(r) != 0 {
		t.Fatalf("the answer revoked its own elements %v", r)
	}
	if n := l.ClientEntries(devA); n != 3 {
		t.Fatalf("devA holds %d of the answer's 3 addresses", n)
	}
	l.Record(t0.Add(time.Second), answer(devA, "next.example.com", t0.Add(2*time.Hour), "203.0.113.9"))
	if n := l.ClientEntries(devA); n != 2 {
		t.Fatalf("devA holds %d after its next answer, want its quota of 2", n)
	}
	checkInvariants(t, l)
}

// TestFloodKeepsOtherClientsAnswers is the reported case: max_entries
// 1000, one client floods 20,000 random names under an allowed wildcard;
// another client's earlier answers all stay live and are never revoked.
func TestFloodKeepsOtherClientsAnswers(t *testing.T) {
	for _, quota := range []int{125, 0} {
		t.Run(fmt.Sprintf("quota %d", quota), func(t *testing.T) {
			l := New(Options{MaxEntries: 1000, MaxPerClient: quota})
			exp := t0.Add(time.Hour)
			for i := range 20 {
				l.Record(t0, answer(devB, fmt.Sprintf("b%d.example.com", i), exp, fmt.Sprintf("203.0.113.%d", i+1)))
			}
			for i := range 20_000 {
				now := t0.Add(time.Duration(i) * time.Millisecond)
				a := answer(devA, fmt.Sprintf("r%d.flood.example.com", i), now.Add(time.Hour), fmt.Sprintf("2001:db8:f::%x", i))
				for _, e := range l.Record(now, a) {
					if e.Client != devA {
						t.Fatalf("answer %d revoked %v", i, e)
					}
				}
			}
			live := 0
			for _, e := range l.Live(t0.Add(time.Minute)) {
				if e.Client == devB {
					live++
				}
			}
			if live != 20 {
				t.Fatalf("devB's answers live: %d of 20", live)
			}
			wantA := 980
			if quota > 0 {
				wantA = quota
			}
			if got, n := l.ClientEntries(devA), l.Stats().Entries; got != wantA || n > 1000 {
				t.Fatalf("devA holds %d (want %d), ledger %d (cap 1000)", got, wantA, n)
			}
		})
	}
}
