package dnsproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startTCP serves h on a loopback port with o and returns the address and
// the server, shut down when the test ends.
func startTCP(t testing.TB, h dns.Handler, o TCPOptions) (netip.AddrPort, *Server) {
	t.Helper()
	addr := freeTCPAddr(t)
	s, err := Listen([]netip.AddrPort{addr}, h, 4, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return addr, s
}

func freeTCPAddr(t testing.TB) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// dialFrom connects to addr from a loopback source address.
func dialFrom(t *testing.T, src string, addr netip.AddrPort) net.Conn {
	t.Helper()
	c, err := tryDialFrom(t, src, addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tryDialFrom is dialFrom that returns the error.
func tryDialFrom(t *testing.T, src string, addr netip.AddrPort) (net.Conn, error) {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c, nil
}

// frame is m as DNS over TCP sends it: length, then message.
func frame(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)
}

// readReply reads one framed reply.
func readReply(c net.Conn) (*dns.Msg, error) {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(c, b); err != nil {
		return nil, err
	}
	m := new(dns.Msg)
	return m, m.Unpack(b)
}

// closedByServer reports whether c was closed by the other end without a
// byte of reply: EOF or a reset, not a timeout of ours.
func closedByServer(c net.Conn) error {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 1))
	switch {
	case n > 0:
		return errors.New("the server answered")
	case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
		return nil
	}
	return err
}

func answering() dns.Handler {
	return dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeNameError)
		_ = w.WriteMsg(m)
	})
}

// waitFor polls cond until it holds or 5 s have passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5s: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Connections beyond the caps, or from a source in no client group, are
// closed at accept without an answer and counted by reason; the others
// are served.
func TestTCPAdmission(t *testing.T) {
	tests := []struct {
		name        string
		o           TCPOptions
		sources     []string // dialled in this order, each held open
		refused     []bool   // per source: closed at accept
		notClient   uint64
		perClient   uint64
		global      uint64
		stillServed string // a source served after the refusals
	}{
		{name: "not a client", o: TCPOptions{Serves: func(a netip.Addr) bool { return a != netip.MustParseAddr("127.0.0.9") }},
			sources: []string{"127.0.0.9", "127.0.0.2"}, refused: []bool{true, false}, notClient: 1, stillServed: "127.0.0.3"},
		{name: "per-client cap", o: TCPOptions{MaxConns: 10, MaxConnsPerClient: 2},
			sources: []string{"127.0.0.2", "127.0.0.2", "127.0.0.2", "127.0.0.3"}, refused: []bool{false, false, true, false},
			perClient: 1, stillServed: "127.0.0.4"},
		{name: "global cap", o: TCPOptions{MaxConns: 3, MaxConnsPerClient: 2},
			sources: []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.2"}, refused: []bool{false, false, false, true, true},
			global: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, s := startTCP(t, answering(), tc.o)
			conns := make([]net.Conn, len(tc.sources))
			for i, src := range tc.sources {
				c, err := tryDialFrom(t, src, addr)
				switch {
				case err == nil:
					conns[i] = c
				case !tc.refused[i] || !errors.Is(err, syscall.ECONNRESET):
					t.Fatal(err)
				}
				// A refused connection's reset can reach the dialler
				// before its connect returns (conns[i] stays nil).
				// Accepted or refused before the next dial, so that the
				// order is the one of the table.
				waitFor(t, "connection decided", func() bool {
					st := s.TCPStats()
					return st.Accepted+st.RefusedNotClient+st.RefusedPerClient+st.RefusedGlobal == uint64(i+1)
				})
			}
			for i, c := range conns {
				if c == nil {
					continue
				}
				if _, err := c.Write(frame(t, query("x.example.", dns.TypeA, false))); err != nil && !tc.refused[i] {
					t.Fatal(err)
				}
				if tc.refused[i] {
					if err := closedByServer(c); err != nil {
						t.Errorf("connection %d from %s: %v, want closed without an answer", i, tc.sources[i], err)
					}
					continue
				}
				if r, err := readReply(c); err != nil || r.Rcode != dns.RcodeNameError {
					t.Errorf("connection %d from %s: %v %v, want an answer", i, tc.sources[i], r, err)
				}
			}
			st := s.TCPStats()
			if st.RefusedNotClient != tc.notClient || st.RefusedPerClient != tc.perClient || st.RefusedGlobal != tc.global {
				t.Errorf("refused not-client %d per-client %d global %d, want %d %d %d",
					st.RefusedNotClient, st.RefusedPerClient, st.RefusedGlobal, tc.notClient, tc.perClient, tc.global)
			}
			if tc.stillServed != "" {
				c := dialFrom(t, tc.stillServed, addr)
				if _, err := c.Write(frame(t, query("x.example.", dns.TypeA, false))); err != nil {
					t.Fatal(err)
				}
				if _, err := readReply(c); err != nil {
					t.Errorf("%s not served after the refusals: %v", tc.stillServed, err)
				}
				c.Close()
			}
			// Closing frees the slots: the open gauge goes back to zero.
			for _, c := range conns {
				if c != nil {
					c.Close()
				}
			}
			waitFor(t, "connections released", func() bool { return s.TCPStats().Open == 0 })
		})
	}
}

// A connection that sends nothing is closed after the idle timeout; one
// that starts a query and does not finish it, after the read timeout
// from its first byte, even while it keeps trickling; one that does not
// read its replies, after the write timeout. Each is counted by phase.
func TestTCPTimeouts(t *testing.T) {
	bigReply := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		txt := strings.Repeat("x", 250)
		for range 200 {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET}, Txt: []string{txt}})
		}
		_ = w.WriteMsg(m)
	})
	long := 10 * time.Second
	tests := []struct {
		name  string
		o     TCPOptions
		h     dns.Handler
		send  func(t *testing.T, c net.Conn)
		phase func(TCPStats) uint64
	}{
		{name: "idle", o: TCPOptions{IdleTimeout: 50 * time.Millisecond, ReadTimeout: long},
			send: func(*testing.T, net.Conn) {}, phase: func(s TCPStats) uint64 { return s.TimeoutIdle }},
		{name: "idle after a query", o: TCPOptions{IdleTimeout: 50 * time.Millisecond, ReadTimeout: long},
			send: func(t *testing.T, c net.Conn) {
				if _, err := c.Write(frame(t, query("x.example.", dns.TypeA, false))); err != nil {
					t.Fatal(err)
				}
				if _, err := readReply(c); err != nil {
					t.Fatal(err)
				}
			}, phase: func(s TCPStats) uint64 { return s.TimeoutIdle }},
		{name: "one byte of the length", o: TCPOptions{IdleTimeout: long, ReadTimeout: 50 * time.Millisecond},
			send: func(t *testing.T, c net.Conn) {
				if _, err := c.Write([]byte{0}); err != nil {
					t.Fatal(err)
				}
			}, phase: func(s TCPStats) uint64 { return s.TimeoutRead }},
		{name: "trickle", o: TCPOptions{IdleTimeout: long, ReadTimeout: 100 * time.Millisecond},
			send: func(t *testing.T, c net.Conn) {
				// A byte every 20 ms: each read is quick, the query is not.
				for _, b := range frame(t, query("trickle.example.", dns.TypeA, false)) {
					if _, err := c.Write([]byte{b}); err != nil {
						return // closed: what the test wants
					}
					time.Sleep(20 * time.Millisecond)
				}
				t.Error("the whole query was sent: the read timeout did not close the connection")
			}, phase: func(s TCPStats) uint64 { return s.TimeoutRead }},
		{name: "replies not read", o: TCPOptions{IdleTimeout: long, ReadTimeout: long, WriteTimeout: 100 * time.Millisecond, Pipeline: 4}, h: bigReply,
			send: func(t *testing.T, c net.Conn) {
				// 200 queries of 50 KB replies each: more than the
				// sockets buffer, so a write blocks on a client that
				// does not read.
				var b []byte
				for range 200 {
					b = append(b, frame(t, query("big.example.", dns.TypeTXT, false))...)
				}
				_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				_, _ = c.Write(b)
			}, phase: func(s TCPStats) uint64 { return s.TimeoutWrite }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.h
			if h == nil {
				h = answering()
			}
			addr, s := startTCP(t, h, tc.o)
			c := dialFrom(t, "127.0.0.2", addr)
			if tc.name == "replies not read" {
				// A small receive window, so that the replies back up.
				_ = c.(*net.TCPConn).SetReadBuffer(4096)
			}
			tc.send(t, c)
			waitFor(t, "timeout counted", func() bool { return tc.phase(s.TCPStats()) == 1 })
			if tc.name != "replies not read" {
				if err := closedByServer(c); err != nil {
					t.Errorf("%v, want the connection closed by the server", err)
				}
			}
			waitFor(t, "connection released", func() bool { return s.TCPStats().Open == 0 })
		})
	}
}

// Queries written back to back on one connection are worked on at once,
// at most Pipeline of them, and each is answered when it is done: a slow
// query's reply comes after the fast ones that followed it.
func TestTCPPipelining(t *testing.T) {
	const pipeline, queries = 4, 10
	gate, gate2 := make(chan struct{}), make(chan struct{})
	var inflight, peak atomic.Int32
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		n := inflight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		switch r.Question[0].Name {
		case "slow.example.":
			<-gate
		case "slow2.example.":
			<-gate2
		}
		inflight.Add(-1)
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeNameError)
		_ = w.WriteMsg(m)
	})
	addr, _ := startTCP(t, h, TCPOptions{Pipeline: pipeline})
	var open1, open2 sync.Once
	release1 := func() { open1.Do(func() { close(gate) }) }
	release2 := func() { open2.Do(func() { close(gate2) }) }
	// Registered after startTCP's: runs first, so a failing test's
	// shutdown does not wait on blocked queries.
	t.Cleanup(func() { release1(); release2() })
	c := dialFrom(t, "127.0.0.2", addr)

	// Out of order: the slow query first, the fast ones after it.
	slow := query("slow.example.", dns.TypeA, false)
	var b []byte
	fast := make(map[uint16]bool)
	slow.Id = 100
	b = append(b, frame(t, slow)...)
	for i := range 3 {
		m := query("fast.example.", dns.TypeA, false)
		m.Id = uint16(i + 1)
		fast[m.Id] = true
		b = append(b, frame(t, m)...)
	}
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		r, err := readReply(c)
		if err != nil {
			t.Fatal(err)
		}
		if !fast[r.Id] {
			t.Fatalf("reply %d before the fast ones: replies are not out of order", r.Id)
		}
		delete(fast, r.Id)
	}
	release1()
	if r, err := readReply(c); err != nil || r.Id != slow.Id {
		t.Fatalf("slow reply: %v %v", r, err)
	}

	// Bounded: slow queries fill the pipeline, and no more are taken until
	// one is done.
	peak.Store(0)
	ids := make(map[uint16]bool)
	b = nil
	for i := range queries {
		m := query("slow2.example.", dns.TypeA, false)
		m.Id = uint16(200 + i)
		ids[m.Id] = true
		b = append(b, frame(t, m)...)
	}
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pipeline full", func() bool { return inflight.Load() >= pipeline })
	release2()
	for range queries {
		r, err := readReply(c)
		if err != nil {
			t.Fatal(err)
		}
		if !ids[r.Id] {
			t.Fatalf("reply %d: no such query, or answered twice", r.Id)
		}
		delete(ids, r.Id)
	}
	if p := peak.Load(); p != pipeline {
		t.Errorf("%d queries of one connection at once, want the pipeline's %d", p, pipeline)
	}
}

// The handler's replies go out whole under concurrent writers: many
// connections, each with many queries in flight, every reply readable and
// matched to its query (the race detector watches the writer).
func TestTCPConcurrentConnections(t *testing.T) {
	addr, s := startTCP(t, answering(), TCPOptions{MaxConnsPerClient: 64})
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			ids := make(map[uint16]bool)
			var b []byte
			for i := range 50 {
				m := query("x.example.", dns.TypeA, false)
				m.Id = uint16(i)
				ids[m.Id] = true
				pk, _ := m.Pack()
				b = append(append(b, byte(len(pk)>>8), byte(len(pk))), pk...)
			}
			if _, err := c.Write(b); err != nil {
				errs <- err
				return
			}
			for range 50 {
				r, err := readReply(c)
				if err != nil {
					errs <- err
					return
				}
				if !ids[r.Id] {
					errs <- errors.New("reply to no query of this connection")
					return
				}
				delete(ids, r.Id)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := s.TCPStats(); st.Accepted != 32 {
		t.Errorf("%d accepted, want 32", st.Accepted)
	}
}

// Wildcard listen addresses serve TCP from the address the client used,
// and 0.0.0.0 and [::] can be listed together.
func TestTCPWildcard(t *testing.T) {
	port := freeTCPAddr(t).Port()
	addrs := []netip.AddrPort{netip.AddrPortFrom(netip.IPv4Unspecified(), port), netip.AddrPortFrom(netip.IPv6Unspecified(), port)}
	s, err := Listen(addrs, answering(), 2, TCPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	for _, dst := range []string{"127.0.0.1", "127.0.0.7", "::1"} {
		r, _, err := (&dns.Client{Net: "tcp", Timeout: 2 * time.Second}).Exchange(query("x.example.", dns.TypeA, false),
			netip.AddrPortFrom(netip.MustParseAddr(dst), port).String())
		if err != nil || r.Rcode != dns.RcodeNameError {
			t.Errorf("%s: %v %v", dst, r, err)
		}
	}
}

// Serves follows the handler's current policy, so that a reload applies
// to the next connection.
func TestHandlerServes(t *testing.T) {
	e := newEnv(t, nil)
	if !e.h.Serves(devA) || e.h.Serves(outside) {
		t.Fatalf("Serves(%s)=%v Serves(%s)=%v", devA, e.h.Serves(devA), outside, e.h.Serves(outside))
	}
	e.h.SetPolicy(loopbackPolicy(t))
	if !e.h.Serves(netip.MustParseAddr("127.0.0.1")) {
		t.Error("new policy not applied")
	}
}

// BenchmarkTCPQueries: queries on one connection, one at a time or 16
// written back to back (pipelined), against a handler that answers at once.
func BenchmarkTCPQueries(b *testing.B) {
	for _, batch := range []int{1, 16} {
		b.Run(map[int]string{1: "sequential", 16: "pipelined16"}[batch], func(b *testing.B) {
			addr, _ := startTCP(b, answering(), TCPOptions{})
			c, err := net.Dial("tcp", addr.String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			m := query("x.example.", dns.TypeA, false)
			pk, _ := m.Pack()
			one := append([]byte{byte(len(pk) >> 8), byte(len(pk))}, pk...)
			var frames []byte
			for range batch {
				frames = append(frames, one...)
			}
			b.ResetTimer()
			for done := 0; done < b.N; done += batch {
				if _, err := c.Write(frames); err != nil {
					b.Fatal(err)
				}
				for range batch {
					if _, err := readReply(c); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// Shutdown stops accepting at once, lets a query being worked on be
// answered, and returns when it has been; with a query that does not end
// in time it closes the connection and returns the context's error.
func TestTCPShutdown(t *testing.T) {
	for _, tc := range []struct {
		name    string
		release bool // the query ends within the shutdown's time
	}{{"query finishes", true}, {"query outlives the deadline", false}} {
		t.Run(tc.name, func(t *testing.T) {
			gate := make(chan struct{})
			var once sync.Once
			release := func() { once.Do(func() { close(gate) }) }
			t.Cleanup(release)
			var entered atomic.Int32
			h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
				entered.Add(1)
				<-gate
				m := new(dns.Msg)
				m.SetRcode(r, dns.RcodeNameError)
				_ = w.WriteMsg(m)
			})
			addr := freeTCPAddr(t)
			s, err := Listen([]netip.AddrPort{addr}, h, 2, TCPOptions{})
			if err != nil {
				t.Fatal(err)
			}
			c := dialFrom(t, "127.0.0.2", addr)
			if _, err := c.Write(frame(t, query("x.example.", dns.TypeA, false))); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "query being worked on", func() bool { return entered.Load() == 1 })
			timeout := 10 * time.Second
			if !tc.release {
				timeout = 100 * time.Millisecond
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			shut := make(chan error, 1)
			go func() { shut <- s.Shutdown(ctx) }()
			waitFor(t, "listener closed", func() bool {
				nc, err := net.DialTimeout("tcp", addr.String(), time.Second)
				if err == nil {
					nc.Close()
				}
				return err != nil
			})
			if tc.release {
				release()
				if r, err := readReply(c); err != nil || r.Rcode != dns.RcodeNameError {
					t.Errorf("reply of the query in flight: %v %v", r, err)
				}
				if err := <-shut; err != nil {
					t.Errorf("shutdown: %v", err)
				}
				return
			}
			if err := <-shut; !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("shutdown: %v, want the deadline", err)
			}
			if err := closedByServer(c); err != nil {
				t.Errorf("connection after the deadline: %v, want closed", err)
			}
		})
	}
}
