package e2e

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/lab"
)

// Upstream-path addresses of the fake internet, beside the authoritative
// (upstreamAddr) and the echo servers that answer on every address.
const (
	spoofUpstream = "198.51.100.55" // a forwarder an attacker races
	spoofSource   = "198.51.100.56" // the attacker's own address
	flakyUpstream = "198.51.100.57" // an upstream that goes away and back
	dotUpstream   = "198.51.100.54" // the authoritative behind TLS
	dotName       = "dns.lab.example"
	dotPort       = "8853"         // where the DoT server listens (see TestUpstreamDoT)
	wwwAddr       = "203.0.113.5"  // the authoritative's www.example.com
	forgedAddr    = "203.0.113.66" // what the attacker's replies say
)

// addInetAddr gives the fake internet another address.
func (tp *topo) addInetAddr(t *testing.T, addr string) {
	t.Helper()
	if out, err := tp.inet.Run("ip", "addr", "add", addr+"/32", "dev", "lo"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
}

// waitLog waits until fqdngate's log says s (it is copied from the
// process's stderr as it comes).
func (tp *topo) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(tp.stderr.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the log does not say %q:\n%s", s, tp.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// listenUDP opens a UDP socket in ns.
func listenUDP(t *testing.T, ns *lab.NS, addr string) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	if err := ns.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// captured is a ResponseWriter that keeps the reply, so that the lab's
// authoritative can answer for a fake upstream.
type captured struct {
	dns.ResponseWriter
	msg *dns.Msg
}

func (c *captured) WriteMsg(m *dns.Msg) error { c.msg = m; return nil }

// authAnswer is the authoritative's reply to q, packed.
func (tp *topo) authAnswer(q *dns.Msg) []byte {
	c := &captured{}
	tp.auth.ServeDNS(c, q)
	b, _ := c.msg.Pack()
	return b
}

// serveUDP hands every datagram on pc to h until pc closes.
func serveUDP(pc net.PacketConn, h func(from net.Addr, q *dns.Msg)) {
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) == nil {
				h(from, q)
			}
		}
	}()
}

// TestUpstreamSpoofedReplies: an attacker on the upstream path races
// every answer with replies that carry its own address: another query's
// ID, another question, a query (QR=0), and a perfect reply from another
// source address. fqdngate skips them, counts them, and the device gets
// the real answer: it connects there, and not to the forged address.
func TestUpstreamSpoofedReplies(t *testing.T) {
	tp := newTopoUpstreams(t, "enforce", defaultClients, "", fmt.Sprintf(`["%s"]`, spoofUpstream))
	tp.addInetAddr(t, spoofUpstream)
	tp.addInetAddr(t, spoofSource)
	pc := listenUDP(t, tp.inet, spoofUpstream+":53")
	attacker := listenUDP(t, tp.inet, spoofSource+":53")
	var seen atomic.Int32
	serveUDP(pc, func(from net.Addr, q *dns.Msg) {
		seen.Add(1)
		forge := func(f func(m *dns.Msg)) []byte {
			m := new(dns.Msg)
			m.SetReply(q)
			rr, _ := dns.NewRR(q.Question[0].Name + " 20 IN A " + forgedAddr)
			m.Answer = append(m.Answer, rr)
			f(m)
			b, _ := m.Pack()
			return b
		}
		_, _ = pc.WriteTo(forge(func(m *dns.Msg) { m.Id ^= 0x5a5a }), from)
		_, _ = pc.WriteTo(forge(func(m *dns.Msg) { m.Question[0].Name = "evil.example.com." }), from)
		_, _ = pc.WriteTo(forge(func(m *dns.Msg) { m.Response = false }), from)
		// The attacker knows the gateway's source port (it saw the query)
		// and gets everything else right: only its address differs.
		_, _ = attacker.WriteTo(forge(func(*dns.Msg) {}), from)
		_, _ = pc.WriteTo(tp.authAnswer(q), from)
	})

	addrs := tp.addrsOf(t, tp.devA, "www.example.com.", dns.TypeA, gwDevAddr4)
	if len(addrs) != 1 || addrs[0] != netip.MustParseAddr(wwwAddr) {
		t.Fatalf("device told %v, want only %s (the forged %s must not be believed)", addrs, wwwAddr, forgedAddr)
	}
	if seen.Load() == 0 {
		t.Fatal("the query did not go through the raced upstream")
	}
	c, err := connect(tp.devA, addrs[0], 443, 2*time.Second)
	if err != nil {
		t.Fatalf("the real answer does not connect: %v", err)
	}
	c.Close()
	if _, err := connect(tp.devA, netip.MustParseAddr(forgedAddr), 443, dropWait); !dropped(err) {
		t.Errorf("the forged address is open: %v", err)
	}
	m := tp.metrics(t)
	for _, reason := range []string{"id", "question", "qr"} {
		k := fmt.Sprintf(`fqdngate_upstream_replies_skipped_total{reason="%s",upstream="%s:53"}`, reason, spoofUpstream)
		if m[k] < 1 {
			t.Errorf("%s = %v, want the skipped reply counted", k, m[k])
		}
	}
}

// TestUpstreamDownAndBack: an upstream that stops answering is marked
// down and skipped (the second answers every query, and the dead one is
// not asked again while down), then marked up when it answers probes.
func TestUpstreamDownAndBack(t *testing.T) {
	tp := newTopoUpstreams(t, "enforce", defaultClients, "",
		fmt.Sprintf("[\"%s\", \"%s\"]\nupstream_timeout: 300ms", flakyUpstream, upstreamAddr))
	tp.addInetAddr(t, flakyUpstream)
	pc := listenUDP(t, tp.inet, flakyUpstream+":53")
	var muted atomic.Bool
	serveUDP(pc, func(from net.Addr, q *dns.Msg) {
		if !muted.Load() {
			_, _ = pc.WriteTo(tp.authAnswer(q), from)
		}
	})
	label := flakyUpstream + ":53"
	up := `fqdngate_upstream_up{upstream="` + label + `"}`
	errs := `fqdngate_upstream_errors_total{upstream="` + label + `"}`
	asked := `fqdngate_upstream_duration_seconds_count{upstream="` + label + `"}`
	answered := func(what string) {
		t.Helper()
		r, err := tp.resolve(tp.devA, "www.example.com.", dns.TypeA, gwDevAddr4)
		if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("%s: %v %v", what, r, err)
		}
	}
	if m := tp.metrics(t); m[up] != 1 {
		t.Fatalf("%s = %v at start", up, m[up])
	}
	for range 4 {
		answered("both up")
	}
	if m := tp.metrics(t); m[asked] < 1 {
		t.Fatalf("%s = %v: round robin never asked it", asked, m[asked])
	}

	muted.Store(true)
	deadline := time.Now().Add(15 * time.Second)
	for tp.metrics(t)[up] != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s not 0 after its failures:\n%s", up, tp.stderr.String())
		}
		answered("one muted")
	}
	tp.waitLog(t, "upstream down")
	before := tp.metrics(t)[errs]
	for i := range 20 {
		answered(fmt.Sprintf("down, query %d", i))
	}
	if m := tp.metrics(t); m[errs] != before || m[up] != 0 {
		t.Errorf("while down: %s went from %v to %v (asked again), up %v", errs, before, m[errs], m[up])
	}

	muted.Store(false)
	deadline = time.Now().Add(40 * time.Second)
	for tp.metrics(t)[up] != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%s not back to 1 after it answers again", up)
		}
		time.Sleep(100 * time.Millisecond)
	}
	tp.waitLog(t, "upstream up again")
	n := tp.metrics(t)[asked]
	for range 4 {
		answered("back")
	}
	if m := tp.metrics(t); m[asked] <= n {
		t.Errorf("%s stayed at %v: queries do not reach it after it came back", asked, n)
	}
}

// TestUpstreamDoT: the authoritative behind DNS over TLS, verified
// against upstream_ca_file: the device is answered and connects. With a
// server name the certificate does not carry, the gateway refuses the
// upstream and the device gets SERVFAIL.
func TestUpstreamDoT(t *testing.T) {
	ca, err := lab.NewCA("fqdngate e2e upstream CA")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "upstream-ca.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	ups := func(name string) string {
		return fmt.Sprintf("[\"tls://%s:853#%s\"]\nupstream_ca_file: %s", dotUpstream, name, caFile)
	}
	tp := newTopoUpstreams(t, "enforce", defaultClients, "", ups(dotName))
	tp.addInetAddr(t, dotUpstream)
	cert, err := ca.Leaf(dotName)
	if err != nil {
		t.Fatal(err)
	}
	// The echo server holds port 853 on every address of the fake
	// internet (a listening wildcard socket keeps the port from any other
	// bind), so the DoT server listens on dotPort and the fake internet
	// forwards dotUpstream:853 there: the gateway still dials port 853.
	for _, c := range [][]string{
		{"add", "table", "ip", "dotlab"},
		{"add", "chain", "ip", "dotlab", "pre", "{ type nat hook prerouting priority dstnat; }"},
		{"add", "rule", "ip", "dotlab", "pre", "ip", "daddr", dotUpstream, "tcp", "dport", "853", "dnat", "to", dotUpstream + ":" + dotPort},
	} {
		if out, err := tp.inet.Run("nft", c...); err != nil {
			t.Fatalf("nft %s: %v: %s", strings.Join(c, " "), err, out)
		}
	}
	var ln net.Listener
	if err := tp.inet.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", dotUpstream+":"+dotPort)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// The one certificate, whatever name the gateway asks for.
	srv := &dns.Server{Net: "tcp-tls", Listener: tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}), Handler: tp.auth}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })

	before := tp.auth.count("www.example.com.")
	addrs := tp.addrsOf(t, tp.devA, "www.example.com.", dns.TypeA, gwDevAddr4)
	if len(addrs) != 1 || addrs[0] != netip.MustParseAddr(wwwAddr) {
		t.Fatalf("answer %v, want %s", addrs, wwwAddr)
	}
	if tp.auth.count("www.example.com.") == before {
		t.Fatal("the authoritative was not asked")
	}
	c, err := connect(tp.devA, addrs[0], 443, 2*time.Second)
	if err != nil {
		t.Fatalf("the DoT answer does not connect: %v", err)
	}
	c.Close()

	t.Run("wrong server name: SERVFAIL", func(t *testing.T) {
		_ = tp.proc.Process.Signal(syscall.SIGTERM)
		<-tp.exited
		tp.upstreams = ups("wrong.lab.example")
		tp.startGateway("enforce", defaultClients)
		r, err := tp.resolve(tp.devA, "www.example.com.", dns.TypeA, gwDevAddr4)
		if err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeServerFailure || len(r.Answer) != 0 {
			t.Errorf("rcode %s answer %v, want SERVFAIL and nothing", dns.RcodeToString[r.Rcode], r.Answer)
		}
		tp.waitLog(t, "certificate is valid for dns.lab.example, not wrong.lab.example")
	})
}
