package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/lab"
	"github.com/fqdngate/fqdngate/internal/lab/labtest"
)

// haTopo is the HA lab (lab.UpHA) with the test's fake internet: the
// authoritative DNS of topo_test.go and echo servers on every CDN address.
type haTopo struct {
	t    *testing.T
	ha   *lab.HA
	auth *authServer
}

// The HA tests' names: www.example.com (TTL 20 s) is what devices keep
// cached across a failover; short.example.com (TTL 1 s) opens the long
// 8883 session, whose element has expired long before the failover, so
// that only the conntrack entry carries the session.
const haClients = `cache_size: 0
clients:
  - name: devices
    cidrs: ["192.0.2.0/25"]
    rules:
      - name: hub
        fqdn: ["www.example.com", "short.example.com", "rot.example.com"]
        ports: ["tcp/443", "tcp/8883"]
`

func newHA(t *testing.T) *haTopo {
	labtest.Require(t, "ip", "nft", "sysctl", "keepalived", "conntrackd", "conntrack", "curl")
	h, err := lab.UpHA(lab.HAOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("HA lab logs:\n%s", h.Logs())
			for _, n := range h.Nodes {
				for _, c := range [][]string{{"nft", "list", "table", "inet", "fqdngate"}, {"conntrack", "-L"}, {"ip", "-4", "addr"}} {
					out, err := n.NS.Run(c[0], c[1:]...)
					t.Logf("%s$ %s (%v)\n%s", n.Name, strings.Join(c, " "), err, out)
				}
			}
		}
		if err := h.Close(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	ht := &haTopo{t: t, ha: h, auth: startAuth(t, h.Inet)}
	for _, port := range []int{443, 8883} {
		startEcho(t, h.Inet, port)
	}
	return ht
}

// gatewayConfig is node n's fqdngate.yaml: DNS on its own address and on
// the LAN VIP (bound on both nodes), the test's clients.
func (ht *haTopo) gatewayConfig(n *lab.HANode) string {
	return fmt.Sprintf(`mode: enforce
listen:
  dns: ["%s:53", "%s:53"]
  api: "%s"
upstreams: ["%s"]
enforcer:
  min_ttl: 0s
  grace: 1s
  hold: 2s
%s
state_dir: %s/state
log:
  level: debug
`, n.LanAddr, lab.HALanVIP, lab.HAAPI, upstreamAddr, haClients, n.Dir)
}

// start runs conntrackd, fqdngate and keepalived on node n.
func (ht *haTopo) start(n *lab.HANode) {
	t := ht.t
	t.Helper()
	if err := n.StartConntrackd(); err != nil {
		t.Fatal(err)
	}
	if err := n.StartGateway(context.Background(), binary, ht.gatewayConfig(n), 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := n.StartKeepalived(); err != nil {
		t.Fatal(err)
	}
}

// waitMaster waits until n holds the VIP and the other node does not.
func (ht *haTopo) waitMaster(n *lab.HANode, timeout time.Duration) {
	ht.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		other := ht.ha.Nodes[0]
		if other == n {
			other = ht.ha.Nodes[1]
		}
		if n.HoldsVIP() && !other.HoldsVIP() {
			return
		}
		if time.Now().After(deadline) {
			ht.t.Fatalf("%s did not become the only master within %s (holds VIP: %v, %s holds: %v)", n.Name, timeout, n.HoldsVIP(), other.Name, other.HoldsVIP())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// query asks server from ns with a short timeout.
func query(ns *lab.NS, name string, server netip.Addr, timeout time.Duration) (*dns.Msg, error) {
	var r *dns.Msg
	err := ns.Do(func() error {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		var err error
		r, _, err = (&dns.Client{Timeout: timeout}).Exchange(m, netip.AddrPortFrom(server, 53).String())
		return err
	})
	return r, err
}

// resolveA resolves name through server from ns and returns its first
// address.
func resolveA(t *testing.T, ns *lab.NS, name string, server netip.Addr) netip.Addr {
	t.Helper()
	r, err := query(ns, name, server, 2*time.Second)
	if err != nil {
		t.Fatalf("resolve %s via %s: %v", name, server, err)
	}
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			return netip.MustParseAddr(a.A.String())
		}
	}
	t.Fatalf("resolve %s via %s: no address: %v", name, server, r)
	return netip.Addr{}
}

// session is a long TCP session (MQTT's 8883) that exchanges a line every
// interval and records the longest wait for an echo; it ends at the first
// error (a reset, or no echo within its patience).
type session struct {
	conn     net.Conn
	mu       sync.Mutex
	err      error
	sent     int
	longest  time.Duration
	stop     chan struct{}
	finished chan struct{}
}

func startSession(t *testing.T, ns *lab.NS, addr netip.Addr, interval, patience time.Duration) *session {
	t.Helper()
	c, err := lab.DialFrom(ns, netip.AddrPortFrom(addr, 8883), 2*time.Second)
	if err != nil {
		t.Fatalf("8883 session to %s: %v", addr, err)
	}
	s := &session{conn: c, stop: make(chan struct{}), finished: make(chan struct{})}
	t.Cleanup(func() { s.end(); c.Close() })
	go func() {
		defer close(s.finished)
		r := bufio.NewReader(c)
		for i := 0; ; i++ {
			select {
			case <-s.stop:
				return
			case <-time.After(interval):
			}
			start := time.Now()
			_ = c.SetDeadline(start.Add(patience))
			msg := fmt.Sprintf("telemetry %d", i)
			_, err := fmt.Fprintln(c, msg)
			var line string
			if err == nil {
				line, err = r.ReadString('\n')
			}
			if err == nil && strings.TrimSpace(line) != msg {
				err = fmt.Errorf("echo %q, want %q", line, msg)
			}
			s.mu.Lock()
			if err != nil {
				s.err = fmt.Errorf("message %d: %w", i, err)
				s.mu.Unlock()
				return
			}
			s.sent++
			s.longest = max(s.longest, time.Since(start))
			s.mu.Unlock()
		}
	}()
	return s
}

// state is the session's count of messages echoed and its error.
func (s *session) state() (int, time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent, s.longest, s.err
}

// waitMore waits until n more messages went through, or the session failed.
func (s *session) waitMore(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	start, _, _ := s.state()
	deadline := time.Now().Add(timeout)
	for {
		sent, _, err := s.state()
		if err != nil {
			t.Fatalf("8883 session broke: %v", err)
		}
		if sent >= start+n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("8883 session: %d messages in %s, want %d", sent-start, timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *session) end() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.finished
}

// setElements lists the elements of a set of node n's table, as nft prints
// them (one string per element key, sorted), with their remaining lifetime.
func setElements(t *testing.T, n *lab.HANode, set string) map[string]time.Duration {
	t.Helper()
	out, err := n.NS.Run("nft", "-j", "list", "set", "inet", "fqdngate", set)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("nft -j: %v\n%s", err, out)
	}
	elems := make(map[string]time.Duration)
	for _, o := range doc.Nftables {
		if o.Set == nil {
			continue
		}
		for _, raw := range o.Set.Elem {
			var e struct {
				Elem struct {
					Val     json.RawMessage `json:"val"`
					Expires int             `json:"expires"`
				} `json:"elem"`
			}
			if err := json.Unmarshal(raw, &e); err != nil || e.Elem.Val == nil {
				elems[string(raw)] = 0 // an element without a timeout
				continue
			}
			elems[string(e.Elem.Val)] = time.Duration(e.Elem.Expires) * time.Second
		}
	}
	return elems
}

// hasElementFor reports whether any element of node n's allow4 set names
// addr (as a device's destination).
func hasElementFor(t *testing.T, n *lab.HANode, addr netip.Addr) bool {
	t.Helper()
	for k := range setElements(t, n, "allow4") {
		if strings.Contains(k, `"`+addr.String()+`"`) {
			return true
		}
	}
	return false
}

func waitCond(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dnsGap queries name through the VIP from ns until it gets an answer and
// returns how long that took from start.
func dnsGap(t *testing.T, ns *lab.NS, name string, start time.Time, limit time.Duration) time.Duration {
	t.Helper()
	for {
		r, err := query(ns, name, lab.HALanVIP, 200*time.Millisecond)
		if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("no DNS answer through the VIP within %s of the failure (last: %v %v)", limit, r, err)
		}
	}
}

// TestHAFailover: the primary gateway dies under a device that holds a
// long 8883 session and cached answers. The VIP moves to the secondary;
// the session keeps exchanging (conntrackd carried its flow, whose answer
// expired long ago), DNS answers again within 5 s, and the answers the
// device has cached connect through the secondary without a new query.
// Then the primary returns, catches up and takes the VIP back
// (keepalived preempts once its /readyz check passes), with the session
// still going.
func TestHAFailover(t *testing.T) {
	ht := newHA(t)
	gw1, gw2 := ht.ha.Nodes[0], ht.ha.Nodes[1]
	dev, err := ht.ha.AddDevice("hadev", netip.MustParseAddr("192.0.2.10"), lab.HALanVIP)
	if err != nil {
		t.Fatal(err)
	}
	ht.start(gw1)
	ht.start(gw2)
	ht.waitMaster(gw1, 15*time.Second)

	// The session's answer lives 1 s + 1 s grace; it is gone from gw1's
	// kernel before the failover, the flow is not.
	mqtt := resolveA(t, dev, "short.example.com", lab.HALanVIP)
	sess := startSession(t, dev, mqtt, 100*time.Millisecond, 15*time.Second)
	sess.waitMore(t, 3, 5*time.Second)
	waitCond(t, "the session's element expires on gw1", 10*time.Second, func() bool { return !hasElementFor(t, gw1, mqtt) })
	sess.waitMore(t, 3, 5*time.Second)
	waitCond(t, "gw2's conntrackd holds the session's flow in its external cache", 10*time.Second, func() bool {
		out, err := gw2.Ctd("-e")
		return err == nil && strings.Contains(out, mqtt.String()) && strings.Contains(out, "dport=8883")
	})

	ht.crash(gw1)
	ht.waitMaster(gw2, 10*time.Second)
	sess.waitMore(t, 5, 15*time.Second)
	_, stall, _ := sess.state()
	t.Logf("8883 session: longest wait for an echo %s (across the failover)", stall)
}

// crash kills node n and measures nothing itself.
func (ht *haTopo) crash(n *lab.HANode) {
	ht.t.Helper()
	if err := n.Crash(); err != nil {
		ht.t.Fatal(err)
	}
}

var _ = slices.Sort[[]string]
