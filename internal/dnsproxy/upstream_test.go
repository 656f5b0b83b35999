package dnsproxy

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
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

func TestPoolFailoverAndTCPRetry(t *testing.T) {
	var udpSeen, tcpSeen atomic.Int32
	good := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			udpSeen.Add(1)
			m.Truncated = true
		} else {
			tcpSeen.Add(1)
			rr, _ := dns.NewRR(r.Question[0].Name + " 20 IN A 203.0.113.7")
			m.Answer = append(m.Answer, rr)
		}
		_ = w.WriteMsg(m)
	})
	// A port nobody listens on: ICMP unreachable, a quick error.
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	dead := netip.MustParseAddrPort(pc.LocalAddr().String())
	pc.Close()

	p := NewPool([]netip.AddrPort{dead, good}, time.Second, 0)
	for i := range 4 { // every starting position reaches the good upstream
		rep, err := p.Exchange(context.Background(), upstreamQuery(query("x.example.", dns.TypeA, false)))
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if rep.From != good || len(rep.Msg.Answer) != 1 {
			t.Fatalf("round %d: from %v answer %v", i, rep.From, rep.Msg.Answer)
		}
		if rep.Wire != nil {
			t.Fatalf("round %d: a reply that came over TCP has UDP bytes", i)
		}
	}
	if udpSeen.Load() != 4 || tcpSeen.Load() != 4 {
		t.Errorf("udp %d tcp %d, want 4 each (truncated UDP retried over TCP)", udpSeen.Load(), tcpSeen.Load())
	}
}

func TestPoolRejectsMismatchedReply(t *testing.T) {
	liar := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Question[0].Name = "other.example."
		_ = w.WriteMsg(m)
	})
	_, err := NewPool([]netip.AddrPort{liar}, time.Second, 0).Exchange(context.Background(), upstreamQuery(query("x.example.", dns.TypeA, false)))
	if err == nil {
		t.Fatal("a reply for another question was accepted")
	}
}
