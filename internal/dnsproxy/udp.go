package dnsproxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/miekg/dns"
)

// udpServer serves DNS over UDP with a bounded set of goroutines: one
// reader per SO_REUSEPORT socket (the kernel spreads clients over them)
// and at most max long-lived workers, started as load needs them, fed
// through a bounded backlog. miekg's server starts a goroutine per packet:
// the number of goroutines has no bound, and every fresh one grows its
// stack again.
//
// Idle workers wait on a stack and the last one to finish gets the next
// packet. A channel wakes its receivers in turn, so every query would go
// to the worker idle longest, whose stack the collector has shrunk
// meanwhile, and the query grows it again. The stack keeps the few
// workers a load needs warm.
type udpServer struct {
	conns []*net.UDPConn
	h     dns.Handler
	max   int
	wg    sync.WaitGroup // readers
	// workers counts running workers; close waits for them.
	workers sync.WaitGroup
	once    sync.Once

	// mu guards the fields below.
	mu      sync.Mutex
	idle    []*udpWorker // waiting for a job, the most recent last
	started int
	backlog []udpJob // a ring of udpQueue jobs: head, n
	head, n int
	closed  bool

	// dropped counts packets dropped because the backlog was full.
	dropped atomic.Uint64
}

type udpWorker struct {
	job chan udpJob // one at a time; closed at shutdown
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

func listenUDP(addr netip.AddrPort, h dns.Handler, workers int, lc net.ListenConfig) (*udpServer, error) {
	sockets := max(1, runtime.GOMAXPROCS(0))
	s := &udpServer{h: h, max: max(1, workers), backlog: make([]udpJob, udpQueue)}
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
				s.dispatch(udpJob{conn: c, from: from, buf: buf, n: n})
			}
		}()
	}
}

// dispatch hands j to the most recently idle worker, or a new one while
// fewer than max run, or the backlog; when that is full too, j is
// dropped (the client retries).
func (s *udpServer) dispatch(j udpJob) {
	s.mu.Lock()
	if k := len(s.idle); k > 0 {
		w := s.idle[k-1]
		s.idle = s.idle[:k-1]
		s.mu.Unlock()
		w.job <- j // buffered: never blocks
		return
	}
	if s.started < s.max {
		s.started++
		s.workers.Add(1)
		s.mu.Unlock()
		go s.work(&udpWorker{job: make(chan udpJob, 1)}, j)
		return
	}
	if s.n < len(s.backlog) {
		s.backlog[(s.head+s.n)%len(s.backlog)] = j
		s.n++
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	putBuf(j.buf)
	s.dropped.Add(1)
}

// next returns the oldest job of the backlog, or parks w on the idle
// stack and returns false.
func (s *udpServer) next(w *udpWorker) (udpJob, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n > 0 {
		j := s.backlog[s.head]
		s.backlog[s.head] = udpJob{}
		s.head = (s.head + 1) % len(s.backlog)
		s.n--
		return j, true
	}
	if s.closed {
		close(w.job)
	} else {
		s.idle = append(s.idle, w)
	}
	return udpJob{}, false
}

func (s *udpServer) work(w *udpWorker, j udpJob) {
	defer s.workers.Done()
	for {
		s.handle(j)
		var ok bool
		if j, ok = s.next(w); ok {
			continue
		}
		if j, ok = <-w.job; !ok {
			return
		}
	}
}

func (s *udpServer) handle(j udpJob) {
	req := new(dns.Msg)
	// Unpack copies what it keeps, so the buffer is free after it.
	err := req.Unpack((*j.buf)[:j.n])
	putBuf(j.buf)
	if err != nil || req.Response {
		return // not a query: no answer, as miekg's server does
	}
	s.h.ServeDNS(&udpWriter{conn: j.conn, to: j.from}, req)
}

// close stops reading, lets the workers finish what is queued, and waits.
func (s *udpServer) close() {
	s.once.Do(func() {
		for _, c := range s.conns {
			c.Close()
		}
		s.wg.Wait() // no dispatch after this
		s.mu.Lock()
		s.closed = true
		for _, w := range s.idle {
			close(w.job)
		}
		s.idle = nil
		s.mu.Unlock()
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
