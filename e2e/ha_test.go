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
// that only the conntrack entry carries the session; long.example.com
// (TTL 60 s, added by the partition test) is answered by both nodes.
const haClients = `cache_size: 0
clients:
  - name: devices
    cidrs: ["192.0.2.0/25"]
    rules:
      - name: hub
        fqdn: ["www.example.com", "short.example.com", "rot.example.com", "long.example.com"]
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

// gatewayConfig is node n's fqdngate.yaml: the lab's listen and cluster
// sections, the test's clients.
func (ht *haTopo) gatewayConfig(n *lab.HANode) string {
	return fmt.Sprintf(`mode: enforce
%supstreams: ["%s"]
enforcer:
  min_ttl: 0s
  grace: 1s
  hold: 2s
%s
state_dir: %s/state
log:
  level: debug
%s`, n.ListenYAML(), upstreamAddr, haClients, n.Dir, n.ClusterYAML())
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
// upWithDevice starts both nodes, waits for gw1 to hold the VIPs, and
// adds a device that uses the VIP.
func (ht *haTopo) upWithDevice() *lab.NS {
	ht.t.Helper()
	dev, err := ht.ha.AddDevice("hadev", netip.MustParseAddr("192.0.2.10"), lab.HALanVIP)
	if err != nil {
		ht.t.Fatal(err)
	}
	ht.start(ht.ha.Nodes[0])
	ht.start(ht.ha.Nodes[1])
	ht.waitMaster(ht.ha.Nodes[0], 15*time.Second)
	return dev
}

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

// restart forgets the longest wait so far.
func (s *session) restart() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.longest = 0
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

// prober asks the VIP for name every 50 ms and records the longest time
// between two answers: the DNS gap a device sees.
type prober struct {
	mu       sync.Mutex
	last     time.Time
	gap      time.Duration
	answers  int
	stop     chan struct{}
	finished chan struct{}
}

func startProber(t *testing.T, ns *lab.NS, name string) *prober {
	p := &prober{stop: make(chan struct{}), finished: make(chan struct{}), last: time.Now()}
	go func() {
		defer close(p.finished)
		for {
			select {
			case <-p.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			r, err := query(ns, name, lab.HALanVIP, 250*time.Millisecond)
			if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
				continue
			}
			now := time.Now()
			p.mu.Lock()
			p.gap = max(p.gap, now.Sub(p.last))
			p.last = now
			p.answers++
			p.mu.Unlock()
		}
	}()
	t.Cleanup(p.end)
	return p
}

// reset starts a new measurement.
func (p *prober) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gap, p.answers = 0, 0
}

// result is the longest gap so far, including the one still open, and the
// number of answers.
func (p *prober) result() (time.Duration, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(p.gap, time.Since(p.last)), p.answers
}

// waitAnswers waits until the VIP answered n more times.
func (p *prober) waitAnswers(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	_, start := p.result()
	waitCond(t, "DNS answers through the VIP", timeout, func() bool { _, got := p.result(); return got >= start+n })
}

func (p *prober) end() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.finished
}

// liveElements is node n's allow4 set without the elements that expire
// within margin (they may be gone by the time another node is compared).
func liveElements(t *testing.T, n *lab.HANode, margin time.Duration) []string {
	t.Helper()
	var keys []string
	for k, left := range setElements(t, n, "allow4") {
		if left > margin {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// missingOn lists the elements of want that node n's allow4 set lacks.
func missingOn(t *testing.T, n *lab.HANode, want []string) []string {
	t.Helper()
	have := setElements(t, n, "allow4")
	var missing []string
	for _, k := range want {
		if _, ok := have[k]; !ok {
			missing = append(missing, k)
		}
	}
	return missing
}

// connect443 opens a connection to addr:443 from ns and exchanges a line.
func connect443(ns *lab.NS, addr netip.Addr) error {
	c, err := lab.DialFrom(ns, netip.AddrPortFrom(addr, 443), 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	return echo(c, "hello")
}

// counter reads one of fqdngate's named counters in node n's kernel.
func (ht *haTopo) counter(n *lab.HANode, name string) int {
	ht.t.Helper()
	out, err := n.NS.Run("nft", "list", "counter", "inet", "fqdngate", name)
	if err != nil {
		ht.t.Fatal(err)
	}
	var packets int
	if i := strings.Index(out, "packets "); i >= 0 {
		fmt.Sscanf(out[i:], "packets %d", &packets)
	}
	return packets
}

// crash kills node n: fqdngate, keepalived and conntrackd with SIGKILL,
// every link down.
func (ht *haTopo) crash(n *lab.HANode) {
	ht.t.Helper()
	if err := n.Crash(); err != nil {
		ht.t.Fatal(err)
	}
}

// TestHAFailover: the primary gateway dies under a device that holds a
// long 8883 session and cached answers. The VIP moves to the secondary;
// the session keeps exchanging (conntrackd carried its flow, whose answer
// expired long ago), DNS answers again within 5 s, the secondary's kernel
// holds every element the primary had that is still live, and the answer
// the device has cached connects through the secondary without a new
// query. Then the primary returns: it reports ready only once it holds
// what the secondary learnt meanwhile, takes the VIP back (keepalived
// preempts once the /readyz check passes), and the session, the cached
// answers and DNS go on through it.
func TestHAFailover(t *testing.T) {
	ht := newHA(t)
	gw1, gw2 := ht.ha.Nodes[0], ht.ha.Nodes[1]
	dev := ht.upWithDevice()

	// The session's answer lives 1 s + 1 s grace; it is gone from gw1's
	// kernel before the failover, the flow is not.
	mqtt := resolveA(t, dev, "short.example.com", lab.HALanVIP)
	sess := startSession(t, dev, mqtt, 100*time.Millisecond, 15*time.Second)
	sess.waitMore(t, 3, 5*time.Second)
	waitCond(t, "the session's element expires on gw1", 10*time.Second, func() bool { return !hasElementFor(t, gw1, mqtt) })
	sess.waitMore(t, 3, 5*time.Second)
	waitCond(t, "gw2's kernel holds the session's flow (conntrackd)", 10*time.Second, func() bool {
		out, err := gw2.NS.Run("conntrack", "-L", "-p", "tcp", "--dport", "8883")
		return err == nil && strings.Contains(out, "dst="+mqtt.String()) && strings.Contains(out, "ESTABLISHED")
	})

	// The cached answer: resolved once on gw1 (TTL 20 s), used again
	// after the failover without asking.
	web := resolveA(t, dev, "www.example.com", lab.HALanVIP)
	if err := connect443(dev, web); err != nil {
		t.Fatalf("443 to %s through gw1: %v", web, err)
	}
	asked := ht.auth.count("www.example.com")
	waitCond(t, "gw2 holds gw1's elements before the failover", 10*time.Second, func() bool {
		return len(missingOn(t, gw2, liveElements(t, gw1, 0))) == 0
	})

	probe := startProber(t, dev, "rot.example.com")
	probe.waitAnswers(t, 3, 5*time.Second)
	before := liveElements(t, gw1, 3*time.Second)
	drops2 := ht.counter(gw2, "drops")
	probe.reset()
	sess.restart()
	ht.crash(gw1)
	ht.waitMaster(gw2, 10*time.Second)
	probe.waitAnswers(t, 3, 10*time.Second)
	gap, _ := probe.result()
	t.Logf("failover: DNS gap %s (longest time between two answers through the VIP)", gap)
	if gap > 5*time.Second {
		t.Errorf("DNS through the VIP did not answer for %s, want at most 5 s", gap)
	}
	sess.waitMore(t, 5, 15*time.Second)
	if missing := missingOn(t, gw2, before); len(missing) > 0 {
		t.Errorf("gw2 lacks %d of the %d live elements gw1 had: %v", len(missing), len(before), missing)
	}
	if err := connect443(dev, web); err != nil {
		t.Errorf("the cached answer %s does not connect through gw2: %v", web, err)
	}
	if n := ht.auth.count("www.example.com"); n != asked {
		t.Errorf("www.example.com was asked again (%d → %d): the test did not use the cached answer", asked, n)
	}
	if log := gw2.NotifyLog(); !strings.Contains(log, "state primary") || strings.Contains(log, "failed") {
		t.Errorf("gw2's notify script did not run cleanly:\n%s", log)
	}
	_, stall, _ := sess.state()
	t.Logf("failover: 8883 session unbroken, longest wait for an echo %s; packets gw2 dropped: %d", stall, ht.counter(gw2, "drops")-drops2)

	// While gw1 is down, the device learns an answer on gw2 alone.
	late := resolveA(t, dev, "rot.example.com", lab.HALanVIP)
	if err := gw1.Reboot(); err != nil {
		t.Fatal(err)
	}
	if err := gw1.StartConntrackd(); err != nil {
		t.Fatal(err)
	}
	if err := gw1.StartGateway(context.Background(), binary, ht.gatewayConfig(gw1), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// Ready means caught up: what gw2 learnt while gw1 was down is in
	// gw1's kernel the moment /readyz says 200.
	if !hasElementFor(t, gw1, late) {
		t.Errorf("gw1 reports ready without the element for %s that gw2 installed while it was down", late)
	}
	drops1 := ht.counter(gw1, "drops")
	probe.reset()
	sess.restart()
	if err := gw1.StartKeepalived(); err != nil {
		t.Fatal(err)
	}
	ht.waitMaster(gw1, 20*time.Second)
	probe.waitAnswers(t, 3, 10*time.Second)
	gap, _ = probe.result()
	t.Logf("failback: DNS gap %s", gap)
	if gap > 5*time.Second {
		t.Errorf("DNS through the VIP did not answer for %s when gw1 took over again, want at most 5 s", gap)
	}
	sess.waitMore(t, 5, 15*time.Second)
	for _, a := range []netip.Addr{web, late} {
		if err := connect443(dev, a); err != nil {
			t.Errorf("%s does not connect through gw1 after it took over again: %v", a, err)
		}
	}
	_, stall, _ = sess.state()
	t.Logf("failback: 8883 session unbroken, longest wait for an echo %s; packets gw1 dropped: %d", stall, ht.counter(gw1, "drops")-drops1)
}

// elementFor is the allow4 element of node n for client → addr:443 and
// its remaining lifetime.
func elementFor(t *testing.T, n *lab.HANode, client, addr netip.Addr) (time.Duration, bool) {
	t.Helper()
	for k, left := range setElements(t, n, "allow4") {
		if strings.Contains(k, `"`+client.String()+`"`) && strings.Contains(k, `"`+addr.String()+`"`) && strings.Contains(k, "443") && !strings.Contains(k, "8883") {
			return left, true
		}
	}
	return 0, false
}

// TestHAPartition: the sync link between the nodes is cut; each node
// keeps serving its own devices (a device per node, using that node's own
// address) and installing their answers, while the other node does not
// get them. When the link returns, both converge: each kernel holds the
// other's elements, and for an answer both gave, the later expiry.
func TestHAPartition(t *testing.T) {
	ht := newHA(t)
	ht.auth.records = map[string][]string{"long.example.com.|A": {"long.example.com. 60 IN A 203.0.113.7"}}
	gw1, gw2 := ht.ha.Nodes[0], ht.ha.Nodes[1]
	a, b := netip.MustParseAddr("192.0.2.20"), netip.MustParseAddr("192.0.2.21")
	devA, err := ht.ha.AddDevice("hadeva", a, gw1.LanAddr)
	if err != nil {
		t.Fatal(err)
	}
	devB, err := ht.ha.AddDevice("hadevb", b, gw2.LanAddr)
	if err != nil {
		t.Fatal(err)
	}
	ht.start(gw1)
	ht.start(gw2)

	if err := ht.ha.SetSyncLink(false); err != nil {
		t.Fatal(err)
	}
	// Each node alone answers, installs and serves its own device.
	webA := resolveA(t, devA, "www.example.com", gw1.LanAddr)
	rotB := resolveA(t, devB, "rot.example.com", gw2.LanAddr)
	if err := connect443(devA, webA); err != nil {
		t.Errorf("device A through gw1 during the partition: %v", err)
	}
	if err := connect443(devB, rotB); err != nil {
		t.Errorf("device B through gw2 during the partition: %v", err)
	}
	// The same answer from both nodes, gw2's later: device A asks gw1,
	// then gw2 (its address is on the same network).
	long := resolveA(t, devA, "long.example.com", gw1.LanAddr)
	first, ok := elementFor(t, gw1, a, long)
	firstAt := time.Now()
	if !ok {
		t.Fatalf("gw1 has no element for %s → %s", a, long)
	}
	waitCond(t, "a later answer", 10*time.Second, func() bool {
		left, _ := elementFor(t, gw1, a, long)
		return left <= first-3*time.Second
	})
	resolveA(t, devA, "long.example.com", gw2.LanAddr)
	later, ok := elementFor(t, gw2, a, long)
	laterAt := time.Now()
	if !ok {
		t.Fatalf("gw2 has no element for %s → %s", a, long)
	}
	// The link is really cut: neither node has the other's answers.
	if _, ok := elementFor(t, gw2, a, webA); ok {
		t.Fatalf("gw2 got gw1's answer for %s during the partition: the link was not cut", webA)
	}
	if _, ok := elementFor(t, gw1, b, rotB); ok {
		t.Fatalf("gw1 got gw2's answer for %s during the partition: the link was not cut", rotB)
	}

	if err := ht.ha.SetSyncLink(true); err != nil {
		t.Fatal(err)
	}
	waitCond(t, "both kernels hold the other node's elements", 30*time.Second, func() bool {
		_, ok1 := elementFor(t, gw2, a, webA)
		_, ok2 := elementFor(t, gw1, b, rotB)
		return ok1 && ok2
	})
	// Newest expiry wins on both: gw1 takes gw2's later one, gw2 keeps it.
	olderEnd, laterEnd := firstAt.Add(first), laterAt.Add(later)
	if laterEnd.Sub(olderEnd) < 2*time.Second {
		t.Fatalf("the two answers expire %s apart, too close to tell", laterEnd.Sub(olderEnd))
	}
	waitCond(t, "both nodes hold gw2's later expiry for long.example.com", 30*time.Second, func() bool {
		l1, ok1 := elementFor(t, gw1, a, long)
		l2, ok2 := elementFor(t, gw2, a, long)
		now := time.Now()
		return ok1 && ok2 && now.Add(l1).After(olderEnd.Add(time.Second)) && now.Add(l2).After(olderEnd.Add(time.Second))
	})
}

// TestHADaemonDown: only fqdngate dies on the master (kill -9), the host
// and its keepalived live on. keepalived's /readyz check fails, the
// master gives up the VIPs, and DNS through the VIP answers again from
// gw2 within 5 s, while the 8883 session goes on. When fqdngate is back
// and ready, gw1 takes the VIPs back.
func TestHADaemonDown(t *testing.T) {
	ht := newHA(t)
	gw1, gw2 := ht.ha.Nodes[0], ht.ha.Nodes[1]
	dev := ht.upWithDevice()
	mqtt := resolveA(t, dev, "short.example.com", lab.HALanVIP)
	sess := startSession(t, dev, mqtt, 100*time.Millisecond, 15*time.Second)
	sess.waitMore(t, 3, 5*time.Second)

	probe := startProber(t, dev, "rot.example.com")
	probe.waitAnswers(t, 3, 5*time.Second)
	probe.reset()
	gw1.Gate.Kill()
	gw1.Gate = nil
	ht.waitMaster(gw2, 15*time.Second)
	probe.waitAnswers(t, 3, 10*time.Second)
	gap, _ := probe.result()
	t.Logf("fqdngate killed on the master: DNS gap %s", gap)
	if gap > 5*time.Second {
		t.Errorf("DNS through the VIP did not answer for %s after gw1's fqdngate died, want at most 5 s", gap)
	}
	sess.waitMore(t, 5, 15*time.Second)
	if !strings.Contains(gw1.Keepalived.Log.String(), "FAULT") {
		t.Errorf("gw1's keepalived did not go to FAULT:\n%s", gw1.Keepalived.Log.String())
	}

	if err := gw1.StartGateway(context.Background(), binary, ht.gatewayConfig(gw1), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	ht.waitMaster(gw1, 20*time.Second)
	probe.waitAnswers(t, 3, 10*time.Second)
	sess.waitMore(t, 5, 15*time.Second)
}
