package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/api"
	"github.com/fqdngate/fqdngate/internal/monitor"
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

// TestDNSBypassWithoutIPv6Listener: with no IPv6 listen address, a
// device's DNS over IPv6 to another server cannot be redirected. It is
// dropped (fail closed), the start-up log says so and names the client
// network, and the drop is explained as DNS to another resolver, not as a
// hard-coded address. IPv4 DNS to another server is still redirected.
func TestDNSBypassWithoutIPv6Listener(t *testing.T) {
	tp := newTopoListen(t, "enforce", defaultClients, fmt.Sprintf(`["%s:53"]`, gwDevAddr4))
	if log := tp.stderr.String(); !strings.Contains(log, "no IPv6 listen address that clients can reach") ||
		!strings.Contains(log, "2001:db8:1::/64") {
		t.Errorf("no start-up warning naming the IPv6 clients:\n%s", log)
	}
	if r, err := tp.resolve(tp.devA, "www.example.com.", dns.TypeA, otherDNS); err != nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("IPv4 query to %s: %v %v, want it redirected and answered", otherDNS, r, err)
	}

	// The fake internet owns 2001:db8:cd::/64: were the query let
	// through, it would come back as port unreachable, not as a drop.
	const other6 = "2001:db8:cd::53"
	before := tp.counter(t, "drops")
	if r, err := tp.resolve(tp.devA, "www.example.com.", dns.TypeAAAA, other6); err == nil {
		t.Fatalf("IPv6 query to %s answered: %v", other6, r)
	}
	if after := tp.counter(t, "drops"); after <= before {
		t.Errorf("drops counter %d → %d, want the IPv6 query dropped", before, after)
	}
	var ex *monitor.Explanation
	deadline := time.Now().Add(5 * time.Second)
	for ex == nil && time.Now().Before(deadline) {
		var evs api.EventsResponse
		tp.apiGet(t, "/api/v1/events?since=0&limit=10000", &evs)
		for _, e := range evs.Events {
			if e.Kind == monitor.KindDrop && e.Drop != nil && e.Drop.Addr == netip.MustParseAddr(other6) {
				ex = e.Drop
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ex == nil {
		t.Fatalf("no drop event for %s", other6)
	}
	if ex.Reason != monitor.DNSBypass || ex.Client != netip.MustParseAddr(devAAddr6) || ex.Port != "udp/53" ||
		!strings.Contains(ex.Message, devAAddr6+" sent DNS to "+other6) {
		t.Errorf("explained as %s from %s on %s: %q", ex.Reason, ex.Client, ex.Port, ex.Message)
	}
	if !strings.Contains(ex.Message, "no IPv6 listen address") {
		t.Errorf("explanation does not name the missing listen address: %q", ex.Message)
	}
	if m := tp.metrics(t); m[`fqdngate_drops_total{reason="dns"}`] < 1 {
		t.Errorf(`fqdngate_drops_total{reason="dns"} = %v`, m[`fqdngate_drops_total{reason="dns"}`])
	}
}
