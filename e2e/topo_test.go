package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/lab"
	"github.com/fqdngate/fqdngate/internal/lab/labtest"
)

// binary is the fqdngate under test and labBinary the fqdnlab, built
// once by TestMain into the same directory (where fqdnlab looks for
// fqdngate).
var binary, labBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fqdngate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "fqdngate")
	labBinary = filepath.Join(dir, "fqdnlab")
	for _, b := range []struct{ out, pkg string }{{binary, "../cmd/fqdngate"}, {labBinary, "../cmd/fqdnlab"}} {
		build := exec.Command("go", "build", "-race", "-o", b.out, b.pkg)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// The lab's addresses: documentation ranges only, inside our namespaces.
const (
	gwDevAddr4   = "192.0.2.1"
	gwDevAddr6   = "2001:db8:1::1"
	devAAddr4    = "192.0.2.10"
	devAAddr6    = "2001:db8:1::10"
	devBAddr4    = "192.0.2.11"
	upstreamAddr = "198.51.100.53"
	otherDNS     = "198.51.100.99" // a resolver the device should not use; nothing listens there
)

// topo is device A and B, the gateway, and a fake internet.
type topo struct {
	t              *testing.T
	gw, devA, devB *lab.NS
	inet           *lab.NS
	auth           *authServer
	stderr         *lab.SyncBuffer
	proc           *exec.Cmd
	// cfgPath is the gateway's configuration file, stateDir its state.
	cfgPath, stateDir string
	// exited is closed when the current fqdngate process has ended.
	exited chan struct{}
	// listenDNS is the gateway's listen.dns list; empty means both
	// device-side addresses.
	listenDNS string
	// probeDNS is where launch asks whether fqdngate answers, from devA;
	// empty means the gateway's device-side address.
	probeDNS string
	// upstreams is the gateway's upstreams: section (a YAML value, other
	// top-level upstream_ keys may follow on their own lines); empty
	// means the lab's authoritative.
	upstreams string
}

// defaultClients is the gateway's client section: every device in one
// group allowed three test names on tcp/443. The answer cache is off: the
// rotation test needs every query to reach the upstream, whose answers
// change on every query.
const defaultClients = `cache_size: 0
clients:
  - name: devices
    cidrs: ["192.0.2.0/24", "2001:db8:1::/64"]
    rules:
      - name: web
        fqdn: ["www.example.com", "rot.example.com", "short.example.com"]
        ports: ["tcp/443"]
`

func newTopo(t *testing.T, mode string) *topo {
	return newTopoClients(t, mode, defaultClients)
}

// newTopoClients is newTopo with another clients: section.
func newTopoClients(t *testing.T, mode, clients string) *topo {
	return newTopoListen(t, mode, clients, "")
}

// newTopoListen is newTopoClients with another listen.dns list.
func newTopoListen(t *testing.T, mode, clients, listenDNS string) *topo {
	return newTopoUpstreams(t, mode, clients, listenDNS, "")
}

// newTopoUpstreams is newTopoListen with another upstreams: section (see
// topo.upstreams).
func newTopoUpstreams(t *testing.T, mode, clients, listenDNS, upstreams string) *topo {
	labtest.Require(t, "ip", "nft", "sysctl")
	tp := &topo{t: t, listenDNS: listenDNS, upstreams: upstreams,
		gw: labtest.NS(t, "gw"), devA: labtest.NS(t, "deva"), devB: labtest.NS(t, "devb"), inet: labtest.NS(t, "inet")}
	must := func(_ string, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Device network: a bridge on the gateway, one veth per device.
	must(tp.gw.Run("ip", "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"))
	must(tp.gw.Run("ip", "link", "set", "br0", "up"))
	must(tp.gw.Run("ip", "addr", "add", gwDevAddr4+"/24", "dev", "br0"))
	must(tp.gw.Run("ip", "addr", "add", gwDevAddr6+"/64", "dev", "br0", "nodad"))
	for _, d := range []struct {
		ns    *lab.NS
		port  string
		addr4 string
		addr6 string
	}{{tp.devA, "pa", devAAddr4, devAAddr6}, {tp.devB, "pb", devBAddr4, "2001:db8:1::11"}} {
		if err := lab.Veth(tp.gw, d.port, d.ns, "eth0"); err != nil {
			t.Fatal(err)
		}
		must(tp.gw.Run("ip", "link", "set", d.port, "master", "br0"))
		must(d.ns.Run("ip", "addr", "add", d.addr4+"/24", "dev", "eth0"))
		must(d.ns.Run("ip", "addr", "add", d.addr6+"/64", "dev", "eth0", "nodad"))
		must(d.ns.Run("ip", "route", "add", "default", "via", gwDevAddr4))
		must(d.ns.Run("ip", "-6", "route", "add", "default", "via", gwDevAddr6))
	}
	// Uplink to the fake internet, which owns 203.0.113.0/24 and
	// 2001:db8:cd::/64 through local routes (every address answers).
	if err := lab.Veth(tp.gw, "up0", tp.inet, "eth0"); err != nil {
		t.Fatal(err)
	}
	must(tp.gw.Run("ip", "addr", "add", "198.51.100.1/24", "dev", "up0"))
	must(tp.gw.Run("ip", "addr", "add", "2001:db8:ff::1/64", "dev", "up0", "nodad"))
	must(tp.gw.Run("ip", "route", "add", "default", "via", "198.51.100.2"))
	must(tp.gw.Run("ip", "-6", "route", "add", "default", "via", "2001:db8:ff::2"))
	must("", tp.gw.Sysctl("net.ipv4.ip_forward", "1"))
	must("", tp.gw.Sysctl("net.ipv6.conf.all.forwarding", "1"))
	must(tp.inet.Run("ip", "addr", "add", "198.51.100.2/24", "dev", "eth0"))
	must(tp.inet.Run("ip", "addr", "add", "2001:db8:ff::2/64", "dev", "eth0", "nodad"))
	must(tp.inet.Run("ip", "addr", "add", upstreamAddr+"/32", "dev", "lo"))
	must(tp.inet.Run("ip", "route", "add", "local", "203.0.113.0/24", "dev", "lo"))
	must(tp.inet.Run("ip", "-6", "route", "add", "local", "2001:db8:cd::/64", "dev", "lo"))
	must(tp.inet.Run("ip", "route", "add", "192.0.2.0/24", "via", "198.51.100.1"))
	must(tp.inet.Run("ip", "-6", "route", "add", "2001:db8:1::/64", "via", "2001:db8:ff::1"))

	for _, ns := range []*lab.NS{tp.gw, tp.devA, tp.devB, tp.inet} {
		if err := ns.WaitIPv6(5 * time.Second); err != nil {
			t.Fatal(err)
		}
	}

	tp.auth = startAuth(t, tp.inet)
	for _, port := range []int{443, 8443, 853, 8883} {
		startEcho(t, tp.inet, port)
	}
	tp.cfgPath = filepath.Join(t.TempDir(), "gw.yaml")
	tp.stateDir = t.TempDir()
	tp.startGateway(mode, clients)
	return tp
}

func (tp *topo) startGateway(mode, clients string) {
	t := tp.t
	listen := tp.listenDNS
	if listen == "" {
		listen = fmt.Sprintf(`["%s:53", "[%s]:53"]`, gwDevAddr4, gwDevAddr6)
	}
	ups := tp.upstreams
	if ups == "" {
		ups = fmt.Sprintf(`["%s"]`, upstreamAddr)
	}
	cfg := fmt.Sprintf(`mode: %s
listen:
  dns: %s
upstreams: %s
enforcer:
  min_ttl: 0s
  grace: 1s
  hold: 2s
%s
state_dir: %s
log:
  level: info
`, mode, listen, ups, clients, tp.stateDir)
	path := tp.cfgPath
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	tp.launch()
}

// launch starts fqdngate with tp.cfgPath and waits until it answers. The
// process is stopped with SIGTERM when the test ends, unless it is gone.
func (tp *topo) launch() {
	t := tp.t
	t.Helper()
	tp.stderr = &lab.SyncBuffer{}
	cmd := tp.gw.Command(binary, "run", "--config", tp.cfgPath)
	cmd.Stderr = tp.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	tp.proc, tp.exited = cmd, exited
	stderr := tp.stderr
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("fqdngate did not stop on SIGTERM within 10s")
		}
		if t.Failed() {
			t.Logf("fqdngate log:\n%s", stderr.String())
			for _, c := range [][]string{{"nft", "list", "table", "inet", "fqdngate"}, {"ip", "-6", "neigh"}, {"ip", "-6", "addr"}} {
				out, err := tp.gw.Run(c[0], c[1:]...)
				t.Logf("gateway$ %s (%v)\n%s", strings.Join(c, " "), err, out)
			}
		}
	})
	// Ready when it answers (a denied probe name gets NXDOMAIN) and says
	// it serves: the listeners open one after the other, so the first
	// address can answer before the last is bound.
	deadline := time.Now().Add(10 * time.Second)
	for {
		server := tp.probeDNS
		if server == "" {
			server = gwDevAddr4
		}
		r, err := tp.resolve(tp.devA, "ready-probe.invalid.", dns.TypeA, server)
		if err == nil && r.Rcode == dns.RcodeNameError && strings.Contains(stderr.String(), "msg=serving") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fqdngate not answering after 10s (last: %v)\n%s", err, tp.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// resolve asks server from inside ns.
func (tp *topo) resolve(ns *lab.NS, name string, qtype uint16, server string) (*dns.Msg, error) {
	var r *dns.Msg
	err := ns.Do(func() error {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		c := &dns.Client{Timeout: 2 * time.Second}
		var err error
		r, _, err = c.Exchange(m, net.JoinHostPort(server, "53"))
		return err
	})
	return r, err
}

// addrsOf resolves and returns the A or AAAA addresses in the answer.
func (tp *topo) addrsOf(t *testing.T, ns *lab.NS, name string, qtype uint16, server string) []netip.Addr {
	t.Helper()
	r, err := tp.resolve(ns, name, qtype, server)
	if err != nil {
		t.Fatalf("resolve %s: %v", name, err)
	}
	if r.Rcode != dns.RcodeSuccess {
		t.Fatalf("resolve %s: %s", name, dns.RcodeToString[r.Rcode])
	}
	var out []netip.Addr
	for _, rr := range r.Answer {
		switch v := rr.(type) {
		case *dns.A:
			out = append(out, netip.MustParseAddr(v.A.String()))
		case *dns.AAAA:
			out = append(out, netip.MustParseAddr(v.AAAA.String()))
		}
	}
	if len(out) == 0 {
		t.Fatalf("resolve %s: no addresses in %v", name, r)
	}
	return out
}

// connect opens a TCP connection from ns and checks it carries data.
func connect(ns *lab.NS, addr netip.Addr, port int, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", netip.AddrPortFrom(addr, uint16(port)).String(), timeout)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := echo(c, "hello"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func echo(c net.Conn, msg string) error {
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintln(c, msg); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != msg {
		return fmt.Errorf("echo %q, want %q", line, msg)
	}
	return nil
}

// counter reads one of fqdngate's named counters from the kernel, the way
// an operator would with nft.
func (tp *topo) counter(t *testing.T, name string) int {
	t.Helper()
	out, err := tp.gw.Run("nft", "list", "counter", "inet", "fqdngate", name)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`packets (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no packets in %q", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// authServer is the fake internet's DNS: authoritative for the test
// names, with a CNAME chain into a CDN zone whose answer rotates on every
// query, and a count of the queries per name.
type authServer struct {
	mu     sync.Mutex
	counts map[string]int
	rot    atomic.Uint32
	// records are answers a test added (answers_test.go), by name and
	// type ("name.|A"), before the built-in ones.
	records map[string][]string
}

func (a *authServer) count(name string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.counts[strings.ToLower(dns.Fqdn(name))]
}

func (a *authServer) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	a.mu.Lock()
	a.counts[name]++
	added, isAdded := a.records[name+"|"+dns.TypeToString[q.Qtype]]
	a.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	add := func(s string) {
		rr, err := dns.NewRR(s)
		if err != nil {
			panic(err)
		}
		m.Answer = append(m.Answer, rr)
	}
	switch {
	case isAdded:
		for _, s := range added {
			add(s)
		}
	case name == "www.example.com." && q.Qtype == dns.TypeA:
		add("www.example.com. 20 IN A 203.0.113.5")
	case name == "www.example.com." && q.Qtype == dns.TypeAAAA:
		add("www.example.com. 20 IN AAAA 2001:db8:cd::5")
	case name == "short.example.com." && q.Qtype == dns.TypeA:
		add("short.example.com. 1 IN A 203.0.113.6")
	case name == "rot.example.com." && q.Qtype == dns.TypeA:
		// Like the support request: allowed name → edge name → CDN name →
		// an address that changes on every query.
		n := a.rot.Add(1)
		add("rot.example.com. 300 IN CNAME rot.edge.example.net.")
		add("rot.edge.example.net. 60 IN CNAME a1.cdn.example.org.")
		add(fmt.Sprintf("a1.cdn.example.org. 20 IN A 203.0.113.%d", 10+n%200))
	case strings.HasSuffix(name, ".flood.example.com.") && q.Qtype == dns.TypeA:
		// A wildcard zone: every name answers, with an address of its own
		// name's (the fairness test floods it with random names).
		h := fnv.New32a()
		h.Write([]byte(name))
		add(fmt.Sprintf("%s 300 IN A 203.0.113.%d", name, 1+h.Sum32()%250))
	case name == "evil.example.com.":
		add("evil.example.com. 20 IN A 203.0.113.66")
	default:
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

func startAuth(t *testing.T, ns *lab.NS) *authServer {
	a := &authServer{counts: make(map[string]int)}
	var servers []*dns.Server
	err := ns.Do(func() error {
		pc, err := net.ListenPacket("udp", upstreamAddr+":53")
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", upstreamAddr+":53")
		if err != nil {
			return err
		}
		servers = []*dns.Server{{PacketConn: pc, Handler: a}, {Listener: ln, Handler: a}}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		go func() { _ = s.ActivateAndServe() }()
		t.Cleanup(func() { _ = s.Shutdown() })
	}
	return a
}

// startEcho runs a line echo server on every address of the fake
// internet at port.
func startEcho(t *testing.T, ns *lab.NS, port int) {
	go serveEcho(listenIn(t, ns, port))
}

// listenIn listens on TCP port of every address of ns until the test
// ends.
func listenIn(t *testing.T, ns *lab.NS, port int) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// serveEcho echoes every line of every connection ln accepts, until ln
// is closed.
func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if _, err := c.Write([]byte(line)); err != nil {
					return
				}
			}
		}()
	}
}

// dropped reports whether a connection attempt failed the way a silent
// drop fails: by timing out.
func dropped(err error) bool {
	var ne net.Error
	return err != nil && (errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded))
}
