package upstream

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startUpstream serves h on loopback UDP and TCP on one port.
func startUpstream(t *testing.T, h dns.HandlerFunc) netip.AddrPort {
	t.Helper()
	// The kernel picks a free UDP port, which a TCP socket of another
	// test (the packages run in parallel) may hold: try a few.
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ln == nil; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err != nil {
			pc.Close()
			if try == 20 {
				t.Fatalf("no port free for both UDP and TCP: %v", err)
			}
		}
	}
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		go func() { _ = s.ActivateAndServe() }()
		t.Cleanup(func() { _ = s.Shutdown() })
	}
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

// answer is a handler that answers A queries with 203.0.113.7.
func answer(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	rr, _ := dns.NewRR(r.Question[0].Name + " 20 IN A 203.0.113.7")
	m.Answer = append(m.Answer, rr)
	_ = w.WriteMsg(m)
}

// startRaw runs a UDP upstream that hands each query to h with the
// socket, to write what it likes.
func startRaw(t *testing.T, h func(pc net.PacketConn, from net.Addr, q *dns.Msg)) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) == nil {
				h(pc, from, q)
			}
		}
	}()
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

func plain(aps ...netip.AddrPort) []Spec {
	out := make([]Spec, len(aps))
	for i, a := range aps {
		out[i] = Spec{Addr: a}
	}
	return out
}

func aQuery(name string) *dns.Msg {
	m := new(dns.Msg)
	m.Question = []dns.Question{{Name: name, Qtype: dns.TypeA, Qclass: dns.ClassINET}}
	m.RecursionDesired = true
	m.SetEdns0(1232, false)
	return m
}

// recorder is an Observer that keeps what it heard.
type recorder struct {
	mu        sync.Mutex
	exchanges map[string]int
	errors    map[string]int
	skipped   map[string]int // upstream/reason
	health    map[string]bool
	changes   int
}

func newRecorder() *recorder {
	return &recorder{exchanges: map[string]int{}, errors: map[string]int{}, skipped: map[string]int{}, health: map[string]bool{}}
}

func (r *recorder) Exchange(up string, _ time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exchanges[up]++
	if err != nil {
		r.errors[up]++
	}
}

func (r *recorder) Skipped(up, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.skipped[up+"/"+reason]++
}

func (r *recorder) Health(up string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.health[up] = ok
	r.changes++
}

func (r *recorder) isUp(up string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.health[up]
}

func (r *recorder) get(f func(*recorder) int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return f(r)
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hasLetterUpper(s string) bool { return strings.ToLower(s) != s }

func timeNow() time.Time { return time.Now() }
