package e2e

import (
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// dropWait is how long a connection attempt waits before it counts as
// dropped. Allowed connections in the lab complete in well under 10 ms.
const dropWait = 400 * time.Millisecond

func TestEnforce(t *testing.T) {
	tp := newTopo(t, "enforce")

	t.Run("allowed name: answered addresses reachable on allowed port only", func(t *testing.T) {
		for _, a := range tp.addrsOf(t, tp.devA, "www.example.com.", dns.TypeA, gwDevAddr4) {
			c, err := connect(tp.devA, a, 443, 2*time.Second)
			if err != nil {
				t.Fatalf("connect %v:443 after resolving: %v", a, err)
			}
			c.Close()
			before := tp.counter(t, "drops")
			if _, err := connect(tp.devA, a, 8443, dropWait); !dropped(err) {
				t.Fatalf("connect %v:8443 (port not in the rule): %v, want dropped", a, err)
			}
			if after := tp.counter(t, "drops"); after <= before {
				t.Errorf("drops counter %d → %d, want it to grow", before, after)
			}
		}
	})

	t.Run("IPv6: AAAA answer over IPv6 reachable, other port dropped", func(t *testing.T) {
		for _, a := range tp.addrsOf(t, tp.devA, "www.example.com.", dns.TypeAAAA, gwDevAddr6) {
			if !a.Is6() {
				t.Fatalf("AAAA answer %v", a)
			}
			c, err := connect(tp.devA, a, 443, 2*time.Second)
			if err != nil {
				t.Fatalf("connect [%v]:443: %v", a, err)
			}
			c.Close()
			if _, err := connect(tp.devA, a, 8443, dropWait); !dropped(err) {
				t.Fatalf("connect [%v]:8443: %v, want dropped", a, err)
			}
		}
	})

	t.Run("address never answered to the device is dropped and counted", func(t *testing.T) {
		before := tp.counter(t, "drops")
		if _, err := connect(tp.devA, netip.MustParseAddr("203.0.113.200"), 443, dropWait); !dropped(err) {
			t.Fatalf("hard-coded address: %v, want dropped", err)
		}
		if after := tp.counter(t, "drops"); after <= before {
			t.Errorf("drops counter %d → %d", before, after)
		}
	})

	t.Run("denied name: NXDOMAIN and zero upstream queries", func(t *testing.T) {
		r, err := tp.resolve(tp.devA, "evil.example.com.", dns.TypeA, gwDevAddr4)
		if err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeNameError || len(r.Answer) != 0 {
			t.Fatalf("reply %s with %d answers, want NXDOMAIN", dns.RcodeToString[r.Rcode], len(r.Answer))
		}
		if n := tp.auth.count("evil.example.com"); n != 0 {
			t.Fatalf("upstream saw %d queries for a denied name", n)
		}
	})

	t.Run("scope client: B cannot use what only A resolved", func(t *testing.T) {
		addrs := tp.addrsOf(t, tp.devA, "www.example.com.", dns.TypeA, gwDevAddr4)
		if _, err := connect(tp.devB, addrs[0], 443, dropWait); !dropped(err) {
			t.Fatalf("device B reached %v which only A resolved: %v", addrs[0], err)
		}
		// Once B asks itself, B is allowed too.
		tp.addrsOf(t, tp.devB, "www.example.com.", dns.TypeA, gwDevAddr4)
		c, err := connect(tp.devB, addrs[0], 443, 2*time.Second)
		if err != nil {
			t.Fatalf("device B after resolving: %v", err)
		}
		c.Close()
	})

	t.Run("DNS to another resolver is redirected to fqdngate", func(t *testing.T) {
		before := tp.counter(t, "dns_redirects")
		r, err := tp.resolve(tp.devA, "www.example.com.", dns.TypeA, otherDNS)
		if err != nil {
			t.Fatalf("query to %s: %v (nothing listens there: only a redirect can answer)", otherDNS, err)
		}
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("redirected reply %v", r)
		}
		r, err = tp.resolve(tp.devA, "evil.example.com.", dns.TypeA, otherDNS)
		if err != nil || r.Rcode != dns.RcodeNameError {
			t.Fatalf("denied name via other resolver: %v %v, want NXDOMAIN from fqdngate", r, err)
		}
		if n := tp.auth.count("evil.example.com"); n != 0 {
			t.Fatalf("upstream saw %d queries for a denied name sent to another resolver", n)
		}
		if after := tp.counter(t, "dns_redirects"); after < before+2 {
			t.Errorf("dns_redirects %d → %d", before, after)
		}
	})

	t.Run("DoT to any server is dropped", func(t *testing.T) {
		before := tp.counter(t, "dot_drops")
		if _, err := connect(tp.devA, netip.MustParseAddr(upstreamAddr), 853, dropWait); !dropped(err) {
			t.Fatalf("DoT: %v, want dropped", err)
		}
		if after := tp.counter(t, "dot_drops"); after <= before {
			t.Errorf("dot_drops %d → %d", before, after)
		}
	})

	t.Run("rule before answer: 1000 resolve-then-connect rounds on rotating answers", func(t *testing.T) {
		const rounds = 1000
		failures := 0
		seen := make(map[netip.Addr]bool)
		for i := range rounds {
			addrs := tp.addrsOf(t, tp.devA, "rot.example.com.", dns.TypeA, gwDevAddr4)
			seen[addrs[0]] = true
			c, err := connect(tp.devA, addrs[0], 443, time.Second)
			if err != nil {
				failures++
				t.Errorf("round %d: %v: %v", i, addrs[0], err)
				if failures > 5 {
					t.FailNow()
				}
				continue
			}
			c.Close()
		}
		if len(seen) < 150 {
			t.Errorf("only %d distinct addresses: rotation did not exercise new elements", len(seen))
		}
	})

	t.Run("expiry: new connections dropped after ttl+grace, established flow kept", func(t *testing.T) {
		addr := tp.addrsOf(t, tp.devA, "short.example.com.", dns.TypeA, gwDevAddr4)[0] // ttl 1s, grace 1s
		resolved := time.Now()
		held, err := connect(tp.devA, addr, 443, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()
		// Poll for the element to age out of the kernel; the kernel's
		// clock, not ours, decides, so this waits on a condition.
		var expiredAfter time.Duration
		for deadline := time.Now().Add(15 * time.Second); ; {
			c, err := connect(tp.devA, addr, 443, dropWait)
			if err != nil {
				if !dropped(err) {
					t.Fatalf("new connection failed, but not by a drop: %v", err)
				}
				expiredAfter = time.Since(resolved)
				break
			}
			c.Close()
			if time.Now().After(deadline) {
				t.Fatal("address still open 15 s after a 1 s answer with 1 s grace")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if expiredAfter < 1500*time.Millisecond {
			t.Errorf("closed after %v, before ttl+grace (2s)", expiredAfter)
		}
		if err := echo(held, "still here"); err != nil {
			t.Fatalf("established connection broken by expiry: %v", err)
		}
	})
}

func TestObserve(t *testing.T) {
	tp := newTopo(t, "observe")

	t.Run("denied name is resolved and answered", func(t *testing.T) {
		addrs := tp.addrsOf(t, tp.devA, "evil.example.com.", dns.TypeA, gwDevAddr4)
		if n := tp.auth.count("evil.example.com"); n != 1 {
			t.Fatalf("upstream saw %d queries, want 1 (observe forwards)", n)
		}
		c, err := connect(tp.devA, addrs[0], 443, 2*time.Second)
		if err != nil {
			t.Fatalf("observe mode blocked %v: %v", addrs[0], err)
		}
		c.Close()
	})

	t.Run("would-be drops pass and are counted", func(t *testing.T) {
		before := tp.counter(t, "would_drops")
		c, err := connect(tp.devA, netip.MustParseAddr("203.0.113.200"), 8443, 2*time.Second)
		if err != nil {
			t.Fatalf("observe mode blocked a never-resolved address: %v", err)
		}
		c.Close()
		if after := tp.counter(t, "would_drops"); after <= before {
			t.Errorf("would_drops %d → %d", before, after)
		}
		if d := tp.counter(t, "drops"); d != 0 {
			t.Errorf("drops = %d in observe mode", d)
		}
	})

	t.Run("AAAA asked over IPv4 is withheld in client scope", func(t *testing.T) {
		r, err := tp.resolve(tp.devA, "www.example.com.", dns.TypeAAAA, gwDevAddr4)
		if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
			t.Fatalf("reply %v, %v: want empty NOERROR", r, err)
		}
	})

	t.Run("still no open resolver", func(t *testing.T) {
		// The fake internet is no client: its query is refused.
		r, err := tp.resolve(tp.inet, "www.example.com.", dns.TypeA, gwDevAddr4)
		if err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeRefused {
			t.Fatalf("outside client got %s", dns.RcodeToString[r.Rcode])
		}
	})
}
