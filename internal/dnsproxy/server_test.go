package dnsproxy

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestListenServesUDPAndTCP: the worker-pool UDP server and miekg's TCP
// server answer concurrent clients, and Shutdown returns once they stop.
func TestListenServesUDPAndTCP(t *testing.T) {
	addr := freeUDPAddr(t)
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeNameError)
		_ = w.WriteMsg(m)
	})
	s, err := Listen([]netip.AddrPort{addr}, h, 8, TCPOptions{MaxConnsPerClient: 256})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for i := range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &dns.Client{Net: []string{"udp", "tcp"}[i%2], Timeout: 2 * time.Second}
			m := new(dns.Msg)
			m.SetQuestion("x.example.", dns.TypeA)
			r, _, err := c.Exchange(m, addr.String())
			if err == nil && (r.Rcode != dns.RcodeNameError || r.Id != m.Id) {
				err = net.UnknownNetworkError("wrong reply")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// Closed: nothing answers any more.
	m := new(dns.Msg)
	m.SetQuestion("x.example.", dns.TypeA)
	if _, _, err := (&dns.Client{Timeout: 300 * time.Millisecond}).Exchange(m, addr.String()); err == nil {
		t.Error("answered after Shutdown")
	}
}

// TestUDPQueueFullDropsAndCounts: with the workers stuck, the server reads
// on until its queue is full, then drops and counts what it cannot queue
// instead of queueing without bound.
func TestUDPQueueFullDropsAndCounts(t *testing.T) {
	addr := freeUDPAddr(t)
	release := make(chan struct{})
	h := dns.HandlerFunc(func(dns.ResponseWriter, *dns.Msg) { <-release })
	s, err := Listen([]netip.AddrPort{addr}, h, 1, TCPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		close(release)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	}()
	c, err := net.Dial("udp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := new(dns.Msg)
	m.SetQuestion("x.example.", dns.TypeA)
	wire, _ := m.Pack()
	const sent = udpQueue + 500
	for i := range sent {
		if _, err := c.Write(wire); err != nil {
			t.Fatal(err)
		}
		if i%256 == 255 {
			time.Sleep(time.Millisecond) // pace: the socket buffer must not be what drops
		}
	}
	// Wait for the reader to get through the socket's backlog.
	deadline := time.Now().Add(10 * time.Second)
	for s.QueueDrops() < 250 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if d := s.QueueDrops(); d < 250 || d > sent-udpQueue-1 {
		t.Fatalf("%d of %d queries dropped, want the %d beyond the queue and the worker (less any the kernel dropped)", d, sent, sent-udpQueue-1)
	}
}

// TestUDPWorkersStartAsNeeded: workers start only when every running one
// is busy, and a worker that has finished takes the next query, so that
// queries one at a time are served by the same warm worker or two.
func TestUDPWorkersStartAsNeeded(t *testing.T) {
	addr := freeUDPAddr(t)
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		_ = w.WriteMsg(m)
	})
	s, err := Listen([]netip.AddrPort{addr}, h, 64, TCPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	c := &dns.Client{Timeout: 2 * time.Second}
	for i := range 50 {
		m := new(dns.Msg)
		m.SetQuestion("x.example.", dns.TypeA)
		if _, _, err := c.Exchange(m, addr.String()); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
	}
	u := s.udp[0]
	u.mu.Lock()
	started := u.started
	u.mu.Unlock()
	// One, or a few: a reply can reach the client, and its next query the
	// reader, before the worker that sent it is back on the idle stack.
	if started > 3 {
		t.Errorf("%d of 64 workers started for 50 queries one at a time, want one or a few", started)
	}
}

// freeUDPAddr is a loopback address whose port nobody holds on UDP nor
// on TCP (Listen binds both): a port free on UDP alone may be some
// loopback connection's TCP source port, as it was when other tests ran
// beside these.
func freeUDPAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	for range 20 {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := netip.MustParseAddrPort(tl.Addr().String())
		ul, err := net.ListenPacket("udp", a.String())
		tl.Close()
		if err == nil {
			ul.Close()
			return a
		}
	}
	t.Fatal("no loopback port free on both UDP and TCP")
	return netip.AddrPort{}
}
