package dnsproxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// udpServer serves DNS over UDP with a fixed set of goroutines: one reader
// per SO_REUSEPORT socket (the kernel spreads clients over them) and a
// pool of long-lived workers fed through a bounded queue. miekg's server
// starts a goroutine per packet; at tens of thousands of queries a second
// the stack growth of fresh goroutines alone was 8% of the CPU, and the
// number of goroutines had no bound.
type udpServer struct {
	conns   []*net.UDPConn
	queue   chan udpJob
	h       dns.Handler
	wg      sync.WaitGroup
	workers sync.WaitGroup
	once    sync.Once
	// dropped counts packets dropped because the queue was full.
	dropped atomic.Uint64
}

type udpJob struct {
	conn *net.UDPConn
	from netip.AddrPort
	buf  *[]byte // pooled; the worker puts it back
	n    int
}

const (
	// udpQueue bounds the packets read and not yet handled; beyond it a
	// packet is dropped (the client retries), as a kernel socket buffer
	// would.
	udpQueue = 4096
	// maxUDPQuery is the largest query read.
	maxUDPQuery = 4096
)

func listenUDP(addr netip.AddrPort, h dns.Handler, workers int) (*udpServer, error) {
	sockets := max(1, runtime.GOMAXPROCS(0))
	s := &udpServer{queue: make(chan udpJob, udpQueue), h: h}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	for range sockets {
		pc, err := lc.ListenPacket(context.Background(), "udp", addr.String())
		if err != nil {
			s.close()
			return nil, err
		}
		c := pc.(*net.UDPConn)
		_ = c.SetReadBuffer(4 << 20)
		s.conns = append(s.conns, c)
	}
	for range workers {
		s.workers.Add(1)
		go s.work()
	}
	return s, nil
}

// serve reads until the sockets are closed; it returns the first error
// that is not the close.
func (s *udpServer) serve(errc chan<- error) {
	for _, c := range s.conns {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				buf := getBuf()
				n, from, err := c.ReadFromUDPAddrPort(*buf)
				if err != nil {
					putBuf(buf)
					if !errors.Is(err, net.ErrClosed) {
						errc <- err
					}
					return
				}
				select {
				case s.queue <- udpJob{conn: c, from: from, buf: buf, n: n}:
				default: // full: dropped; the client retries
					putBuf(buf)
					s.dropped.Add(1)
				}
			}
		}()
	}
}

func (s *udpServer) work() {
	defer s.workers.Done()
	for j := range s.queue {
		req := new(dns.Msg)
		// Unpack copies what it keeps, so the buffer is free after it.
		err := req.Unpack((*j.buf)[:j.n])
		putBuf(j.buf)
		if err != nil || req.Response {
			continue // not a query: no answer, as miekg's server does
		}
		s.h.ServeDNS(&udpWriter{conn: j.conn, to: j.from}, req)
	}
}

// close stops reading, lets the workers finish what is queued, and waits.
func (s *udpServer) close() {
	s.once.Do(func() {
		for _, c := range s.conns {
			c.Close()
		}
		s.wg.Wait()
		close(s.queue)
		s.workers.Wait()
	})
}

// udpWriter is the dns.ResponseWriter of one UDP query.
type udpWriter struct {
	conn *net.UDPConn
	to   netip.AddrPort
}

func (w *udpWriter) LocalAddr() net.Addr { return w.conn.LocalAddr() }
func (w *udpWriter) RemoteAddr() net.Addr {
	return net.UDPAddrFromAddrPort(w.to)
}
func (w *udpWriter) Network() string { return "udp" }
func (w *udpWriter) WriteMsg(m *dns.Msg) error {
	bp := getBuf()
	defer putBuf(bp)
	b, err := m.PackBuffer(*bp)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// client is the query's source without the net.Addr RemoteAddr allocates.
func (w *udpWriter) client() netip.Addr          { return w.to.Addr().Unmap() }
func (w *udpWriter) Write(b []byte) (int, error) { return w.conn.WriteToUDPAddrPort(b, w.to) }
func (w *udpWriter) Close() error                { return nil }
func (w *udpWriter) TsigStatus() error           { return nil }
func (w *udpWriter) TsigTimersOnly(bool)         {}
func (w *udpWriter) Hijack()                     {}

// bufPool holds the buffers of reads and writes, maxUDPQuery bytes each:
// a buffer per packet was a third of all the bytes allocated per query.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, maxUDPQuery)
	return &b
}}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) == maxUDPQuery {
		*b = (*b)[:maxUDPQuery]
		bufPool.Put(b)
	}
}
