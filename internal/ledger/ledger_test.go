package ledger

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/policy"
)

var (
	t0      = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	devA    = netip.MustParseAddr("192.0.2.10")
	devB    = netip.MustParseAddr("192.0.2.11")
	tcp443  = policy.PortRange{Proto: policy.ProtoTCP, Lo: 443, Hi: 443}
	tcp8883 = policy.PortRange{Proto: policy.ProtoTCP, Lo: 8883, Hi: 8883}
)

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func answer(client netip.Addr, name string, expires time.Time, as ...string) Answer {
	return Answer{
		Client: client, Group: "g", Name: name, Chain: []string{"edge.example.net", "a1.cdn.example"},
		Addrs: addrs(as...), Rules: []string{"r"}, Ports: []policy.PortRange{tcp443, tcp8883},
		TTL: 20 * time.Second, Expires: expires,
	}
}

func TestGrantsOfScope(t *testing.T) {
	exp := t0.Add(time.Minute)
	a := answer(devA, "x.example.com", exp, "203.0.113.1", "2001:db8::1")
	if got := New(Options{}).GrantsOf(a); len(got) != 4 || got[0].Client != devA {
		t.Fatalf("client scope grants = %+v", got)
	}
	for _, g := range New(Options{Global: true}).GrantsOf(a) {
		if g.Client.IsValid() || !g.Expires.Equal(exp) {
			t.Fatalf("global scope grant %+v: want no client, expiry %s", g, exp)
		}
	}
}

func TestRecordLookupAndExpiry(t *testing.T) {
	l := New(Options{Retention: 10 * time.Minute})
	l.Record(t0, answer(devA, "x.example.com", t0.Add(2*time.Minute), "203.0.113.1"))
	l.Record(t0, answer(devB, "y.example.com", t0.Add(5*time.Minute), "203.0.113.1"))

	got := l.Lookup(netip.MustParseAddr("203.0.113.1"), netip.Addr{})
	if len(got) != 2 || got[0].Name != "y.example.com" || got[1].Name != "x.example.com" {
		t.Fatalf("lookup = %+v, want newest expiry first", got)
	}
	if got := l.Lookup(netip.MustParseAddr("203.0.113.1"), devA); len(got) != 1 || got[0].Chain[1] != "a1.cdn.example" {
		t.Fatalf("lookup for devA = %+v", got)
	}
	// A repeat answer extends, never shortens.
	l.Record(t0.Add(time.Minute), answer(devA, "x.example.com", t0.Add(90*time.Second), "203.0.113.1"))
	if e := l.Lookup(netip.MustParseAddr("203.0.113.1"), devA)[0]; !e.Expires.Equal(t0.Add(2 * time.Minute)) {
		t.Errorf("expiry shortened to %v", e.Expires)
	}
	l.Record(t0.Add(time.Minute), answer(devA, "x.example.com", t0.Add(3*time.Minute), "203.0.113.1"))
	if e := l.Lookup(netip.MustParseAddr("203.0.113.1"), devA)[0]; !e.Expires.Equal(t0.Add(3 * time.Minute)) {
		t.Errorf("expiry not extended: %v", e.Expires)
	}

	// Expired entries stay for the retention period, for explanations.
	if n := l.GC(t0.Add(4 * time.Minute)); n != 0 {
		t.Errorf("GC removed %d entries still within retention", n)
	}
	if n := l.GC(t0.Add(13*time.Minute + time.Second)); n != 1 {
		t.Errorf("GC removed %d, want devA's entry", n)
	}
	if n := l.GC(t0.Add(16 * time.Minute)); n != 1 || l.Stats().Entries != 0 {
		t.Errorf("GC removed %d, entries left %d", n, l.Stats().Entries)
	}
}

func TestPerNameCapEvictsOldestAndRevokes(t *testing.T) {
	l := New(Options{MaxPerName: 2})
	l.Record(t0, answer(devA, "x.example.com", t0.Add(1*time.Minute), "203.0.113.1"))
	l.Record(t0, answer(devA, "x.example.com", t0.Add(2*time.Minute), "203.0.113.2"))
	revoke := l.Record(t0, answer(devA, "x.example.com", t0.Add(3*time.Minute), "203.0.113.3"))
	if len(revoke) != 2 || revoke[0].Addr != netip.MustParseAddr("203.0.113.1") || revoke[0].Client != devA {
		t.Fatalf("revoke = %+v, want 203.0.113.1 on both ports", revoke)
	}
	if s := l.Stats(); s.Entries != 2 || s.EvictedPerName != 1 {
		t.Fatalf("stats %+v", s)
	}
	// Other clients and names are not counted against the cap.
	if r := l.Record(t0, answer(devB, "x.example.com", t0.Add(time.Minute), "203.0.113.9")); len(r) != 0 {
		t.Fatalf("devB's first answer evicted %+v", r)
	}
}

func TestEvictionKeepsElementsOtherEntriesCover(t *testing.T) {
	l := New(Options{MaxEntries: 2})
	// Two names on one CDN address for one client: evicting one must not
	// remove the element the other still needs.
	l.Record(t0, answer(devA, "a.example.com", t0.Add(1*time.Minute), "203.0.113.1"))
	l.Record(t0, answer(devA, "b.example.com", t0.Add(5*time.Minute), "203.0.113.1"))
	revoke := l.Record(t0, answer(devA, "c.example.com", t0.Add(5*time.Minute), "203.0.113.7"))
	if len(revoke) != 0 {
		t.Fatalf("revoked %+v although b.example.com still covers it", revoke)
	}
	if s := l.Stats(); s.EvictedGlobal != 1 || s.Entries != 2 {
		t.Fatalf("stats %+v", s)
	}
	// Evicting an already expired entry revokes nothing: the kernel aged it out.
	l2 := New(Options{MaxEntries: 1})
	l2.Record(t0, answer(devA, "a.example.com", t0.Add(time.Minute), "203.0.113.1"))
	if r := l2.Record(t0.Add(2*time.Minute), answer(devA, "b.example.com", t0.Add(3*time.Minute), "203.0.113.2")); len(r) != 0 {
		t.Fatalf("revoked expired %+v", r)
	}
}

func TestEvictionNeverRevokesWhatTheNewAnswerHolds(t *testing.T) {
	// The handler installs an answer's elements before Record. When the
	// cap evicts an older entry on the same address and port, the kernel
	// element is the new answer's too and must stay.
	l := New(Options{MaxEntries: 1})
	l.Record(t0, answer(devA, "a.example.com", t0.Add(1*time.Minute), "203.0.113.1"))
	if r := l.Record(t0, answer(devA, "b.example.com", t0.Add(2*time.Minute), "203.0.113.1")); len(r) != 0 {
		t.Fatalf("revoked %+v, which b.example.com's answer was just granted", r)
	}
	if got := l.Lookup(netip.MustParseAddr("203.0.113.1"), devA); len(got) != 1 || got[0].Name != "b.example.com" {
		t.Fatalf("ledger holds %+v", got)
	}
}

func TestGlobalScopeCoverageIgnoresClient(t *testing.T) {
	l := New(Options{MaxPerName: 1, Global: true})
	l.Record(t0, answer(devB, "x.example.com", t0.Add(5*time.Minute), "203.0.113.1"))
	l.Record(t0, answer(devA, "x.example.com", t0.Add(1*time.Minute), "203.0.113.1"))
	// devA's entry is evicted by its next answer; devB's entry still covers
	// the global element.
	if r := l.Record(t0, answer(devA, "x.example.com", t0.Add(2*time.Minute), "203.0.113.2")); len(r) != 0 {
		t.Fatalf("revoked %+v although devB's entry covers it in global scope", r)
	}
}

func TestRepolicy(t *testing.T) {
	l := New(Options{Track: true})
	l.Record(t0, answer(devA, "www.example.com", t0.Add(time.Minute), "203.0.113.5"))
	l.Record(t0, answer(devA, "alias.example.com", t0.Add(time.Minute), "203.0.113.5"))
	l.Record(t0, answer(devA, "rot.example.com", t0.Add(time.Minute), "203.0.113.6"))
	l.TakeChanges()
	revoke, grant := l.Repolicy(t0.Add(time.Second), func(t Told) ([]policy.PortRange, []string, bool) {
		name := t.Name
		switch name {
		case "www.example.com":
			return nil, nil, false // denied now, but alias still covers its address
		case "rot.example.com":
			return []policy.PortRange{tcp443}, []string{"r"}, true // 8883 no longer allowed
		}
		return []policy.PortRange{tcp443, tcp8883}, []string{"r"}, true
	})
	if len(grant) != 0 {
		t.Errorf("grants %v", grant)
	}
	if len(revoke) != 1 || revoke[0].Addr != netip.MustParseAddr("203.0.113.6") || revoke[0].Port != tcp8883 {
		t.Errorf("revoke %v, want only rot's 8883 (www's address is still alias's)", revoke)
	}
	if got := l.Lookup(netip.MustParseAddr("203.0.113.5"), devA); len(got) != 1 || got[0].Name != "alias.example.com" {
		t.Errorf("entries of .5: %v", got)
	}
	if w, r := l.TakeChanges(); len(w) != 1 || len(r) != 1 {
		t.Errorf("changes to persist: %d written, %d removed", len(w), len(r))
	}
}

// TestPerNameCapEvictsEarliestExpiry fills one name to its cap with
// addresses whose expiries come in no order, refreshes some of them, and
// checks that each new address evicts the entry that expires first: by a
// walk of the list when it is short, by its index when it is long (the
// caps below and above longAt), in the fleet's scope and in a client's.
func TestPerNameCapEvictsEarliestExpiry(t *testing.T) {
	for _, c := range []struct {
		name   string
		cap    int
		global bool
	}{
		{"short list", 8, false},
		{"long list", 3 * defaultLongAt, false},
		{"long list, scope global", 3 * defaultLongAt, true},
		{"cap at longAt", defaultLongAt, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := New(Options{MaxPerName: c.cap, Global: c.global})
			expiry := map[netip.Addr]time.Time{}
			addr := func(i int) string { return fmt.Sprintf("2001:db8::%x", i+1) }
			// Expiries a permutation of 1..cap minutes, refreshed later.
			for i := range c.cap {
				exp := t0.Add(time.Duration((i*7)%c.cap+1) * time.Minute)
				l.Record(t0, answer(devA, "cdn.example.com", exp, addr(i)))
				expiry[netip.MustParseAddr(addr(i))] = exp
			}
			// The refreshes push the three earliest to the end.
			for i, a := range []int{0, c.cap / 7, 2 * c.cap / 7} {
				exp := t0.Add(time.Duration(c.cap+1+i) * time.Minute)
				l.Record(t0, answer(devA, "cdn.example.com", exp, addr(a)))
				expiry[netip.MustParseAddr(addr(a))] = exp
			}
			for n := range c.cap / 2 {
				var want netip.Addr
				for a, e := range expiry {
					if !want.IsValid() || e.Before(expiry[want]) {
						want = a
					}
				}
				fresh := c.cap + n
				exp := t0.Add(time.Duration(2*c.cap+n) * time.Minute)
				revoke := l.Record(t0, answer(devA, "cdn.example.com", exp, addr(fresh)))
				wantExp := expiry[want]
				delete(expiry, want)
				expiry[netip.MustParseAddr(addr(fresh))] = exp
				if len(revoke) != 2 || revoke[0].Addr != want || revoke[1].Addr != want {
					t.Fatalf("new address %d evicted %+v, want %s (expires %s) on both ports", n, revoke, want, wantExp)
				}
				if got := l.Lookup(want, devA); len(got) != 0 {
					t.Fatalf("evicted %s still in the ledger: %+v", want, got)
				}
			}
			if s := l.Stats(); s.Entries != c.cap || s.EvictedPerName != uint64(c.cap/2) {
				t.Fatalf("stats %+v, want %d entries and %d evicted", s, c.cap, c.cap/2)
			}
			checkInvariants(t, l)
			// Every address is still found, the refreshed ones included:
			// a repeat answer evicts nothing.
			for a := range expiry {
				if r := l.Record(t0, answer(devA, "cdn.example.com", expiry[a], a.String())); len(r) != 0 {
					t.Fatalf("repeat of %s evicted %+v", a, r)
				}
			}
			if s := l.Stats(); s.Entries != c.cap {
				t.Fatalf("repeats changed the entries: %+v", s)
			}
		})
	}
}
