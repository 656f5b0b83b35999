package dnsproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// Defaults of TCPOptions, used where a field is zero.
const (
	DefaultTCPMaxConns          = 1024
	DefaultTCPMaxConnsPerClient = 16
	// DefaultTCPIdleTimeout is how long a connection may wait for its next
	// query with none outstanding (RFC 7766 section 6.2.3 suggests seconds).
	DefaultTCPIdleTimeout = 10 * time.Second
	// DefaultTCPReadTimeout bounds a whole query from its first byte on:
	// a client that sends a length prefix and then trickles (slowloris)
	// holds its connection this long at most.
	DefaultTCPReadTimeout = 2 * time.Second
	// DefaultTCPWriteTimeout bounds writing one reply; a client that does
	// not read loses its connection.
	DefaultTCPWriteTimeout = 5 * time.Second
	// DefaultTCPPipeline bounds the queries of one connection worked on at
	// once (RFC 7766 section 6.2.1.1); while that many are, the connection
	// is not read.
	DefaultTCPPipeline = 16
	// maxTCPQuery is the largest query read; a longer length prefix closes
	// the connection. A query has one question and a few EDNS options, and
	// reading 64 KiB per connection would let 1,024 connections pin 64 MiB.
	maxTCPQuery = maxUDPQuery
	// minTCPQuery is a DNS header.
	minTCPQuery = 12
	// acceptBackoffMax bounds the pause after a failed accept (out of file
	// descriptors), as net/http does.
	acceptBackoffMax = time.Second
)

// TCPOptions bound the TCP listeners of a Server, all of them together.
type TCPOptions struct {
	// Serves reports whether an address is a client of some group; any
	// other source is closed at accept, before anything is read or a
	// goroutine started for it. nil serves every source (tests only).
	Serves func(netip.Addr) bool
	// MaxConns bounds the connections open at once; MaxConnsPerClient the
	// ones of one source address. Beyond them a connection is closed at
	// accept. By address, not by IPv6 /64: the devices of a network share
	// one /64, and one of them must not use up the others' share; a device
	// that takes many addresses of its /64 is bounded by MaxConns.
	MaxConns, MaxConnsPerClient int
	// IdleTimeout, ReadTimeout and WriteTimeout: see the Default
	// constants.
	IdleTimeout, ReadTimeout, WriteTimeout time.Duration
	// Pipeline bounds the queries of one connection in flight.
	Pipeline int
}

func (o TCPOptions) withDefaults() TCPOptions {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.MaxConns, DefaultTCPMaxConns)
	def(&o.MaxConnsPerClient, DefaultTCPMaxConnsPerClient)
	def(&o.Pipeline, DefaultTCPPipeline)
	defd(&o.IdleTimeout, DefaultTCPIdleTimeout)
	defd(&o.ReadTimeout, DefaultTCPReadTimeout)
	defd(&o.WriteTimeout, DefaultTCPWriteTimeout)
	return o
}

// TCPStats is what the TCP listeners have done, for metrics.
type TCPStats struct {
	// Open is the connections open now.
	Open int
	// Accepted counts the connections served.
	Accepted uint64
	// Refused at accept: source in no client group, the client's cap, the
	// global cap.
	RefusedNotClient, RefusedPerClient, RefusedGlobal uint64
	// Closed because nothing came within the idle timeout, a query did not
	// arrive whole within the read timeout, a reply could not be written
	// within the write timeout.
	TimeoutIdle, TimeoutRead, TimeoutWrite uint64
}

// tcpLimits is the state the TCP listeners of one Server share: the caps
// are for all of them together.
type tcpLimits struct {
	o TCPOptions

	// mu guards the fields below. per has an entry only for a client with
	// a connection open, so it is bounded by MaxConns.
	mu     sync.Mutex
	open   int
	per    map[netip.Addr]int
	conns  map[*tcpConn]struct{}
	closed bool

	accepted, refusedNotClient, refusedPerClient, refusedGlobal atomic.Uint64
	timeoutIdle, timeoutRead, timeoutWrite                      atomic.Uint64
}

func newTCPLimits(o TCPOptions) *tcpLimits {
	return &tcpLimits{o: o.withDefaults(), per: make(map[netip.Addr]int), conns: make(map[*tcpConn]struct{})}
}

// admit registers c if its client may open another connection.
func (l *tcpLimits) admit(c *tcpConn) bool {
	if l.o.Serves != nil && !l.o.Serves(c.client) {
		l.refusedNotClient.Add(1)
		return false
	}
	k := c.client
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return false
	case l.open >= l.o.MaxConns:
		l.refusedGlobal.Add(1)
		return false
	case l.per[k] >= l.o.MaxConnsPerClient:
		l.refusedPerClient.Add(1)
		return false
	}
	l.open++
	l.per[k]++
	l.conns[c] = struct{}{}
	l.accepted.Add(1)
	return true
}

func (l *tcpLimits) release(c *tcpConn) {
	k := c.client
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.per[k]--; l.per[k] <= 0 {
		delete(l.per, k)
	}
	delete(l.conns, c)
}

// drain stops admitting and wakes every connection's reader, so that each
// finishes the queries it has and closes; force closes them at once.
func (l *tcpLimits) drain(force bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for c := range l.conns {
		c.closing.Store(true)
		if force {
			c.close()
		} else {
			_ = c.conn.SetReadDeadline(time.Now())
		}
	}
}

func (l *tcpLimits) stats() TCPStats {
	l.mu.Lock()
	open := l.open
	l.mu.Unlock()
	return TCPStats{Open: open, Accepted: l.accepted.Load(),
		RefusedNotClient: l.refusedNotClient.Load(), RefusedPerClient: l.refusedPerClient.Load(), RefusedGlobal: l.refusedGlobal.Load(),
		TimeoutIdle: l.timeoutIdle.Load(), TimeoutRead: l.timeoutRead.Load(), TimeoutWrite: l.timeoutWrite.Load()}
}

// tcpServer serves DNS over TCP on one address (RFC 7766) with a bounded
// number of goroutines: one accepting, and per connection one reader and
// at most Pipeline queries being worked on, each answered as soon as it
// is done, in whatever order they finish. miekg's server started a
// goroutine for every connection before looking at its source, answered
// one query of a connection at a time, and bounded neither the
// connections nor the time to read a query.
type tcpServer struct {
	ln  *net.TCPListener
	h   dns.Handler
	lim *tcpLimits
	// wg counts the accept loop and the connections.
	wg   sync.WaitGroup
	done chan struct{} // closed at close
	once sync.Once
}

func listenTCP(addr netip.AddrPort, h dns.Handler, lim *tcpLimits, lc net.ListenConfig) (*tcpServer, error) {
	// SO_REUSEPORT, as for UDP: "[::]:53" is dual-stack, and with it
	// "0.0.0.0:53" can be listed too.
	l, err := lc.Listen(context.Background(), "tcp", addr.String())
	if err != nil {
		return nil, err
	}
	return &tcpServer{ln: l.(*net.TCPListener), h: h, lim: lim, done: make(chan struct{})}, nil
}

// serve accepts until the listener is closed; a failure to accept other
// than running out of descriptors or memory is sent to errc.
func (s *tcpServer) serve(errc chan<- error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		var backoff time.Duration
		for {
			conn, err := s.ln.AcceptTCP()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				if !resourceShortage(err) {
					errc <- fmt.Errorf("accept: %w", err)
					return
				}
				backoff = min(max(2*backoff, 5*time.Millisecond), acceptBackoffMax)
				select {
				case <-time.After(backoff):
					continue
				case <-s.done:
					return
				}
			}
			backoff = 0
			c := &tcpConn{s: s, conn: conn}
			if ra, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
				c.client = ra.AddrPort().Addr().Unmap()
			}
			if !s.lim.admit(c) {
				// No FIN handshake or TIME_WAIT kept for a refused
				// connection: a flood must not cost state.
				_ = conn.SetLinger(0)
				_ = conn.Close()
				continue
			}
			c.slots = make(chan struct{}, s.lim.o.Pipeline)
			s.wg.Add(1)
			go c.serve()
		}
	}()
}

func resourceShortage(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// close stops accepting; the connections are drained by the limits.
func (s *tcpServer) close() {
	s.once.Do(func() {
		close(s.done)
		_ = s.ln.Close()
	})
}

// tcpConn is one client connection.
type tcpConn struct {
	s      *tcpServer
	conn   *net.TCPConn
	client netip.Addr
	// slots holds a token per query being worked on.
	slots chan struct{}
	// work counts the queries being worked on; the connection closes
	// after the last.
	work sync.WaitGroup
	// wmu makes each reply one whole write.
	wmu sync.Mutex
	// closing is set at shutdown: the reader's timeout is not an idle one.
	closing   atomic.Bool
	closeOnce sync.Once
}

func (c *tcpConn) close() {
	c.closeOnce.Do(func() { _ = c.conn.Close() })
}

// serve reads queries until the client closes, a timeout or shutdown,
// waits for the replies of the queries read, and closes.
func (c *tcpConn) serve() {
	lim := c.s.lim
	defer func() {
		c.work.Wait()
		c.close()
		lim.release(c)
		c.s.wg.Done()
	}()
	var hdr [2]byte
	for {
		if err := c.conn.SetReadDeadline(time.Now().Add(lim.o.IdleTimeout)); err != nil || c.closing.Load() {
			return // closing: after the deadline, or drain's came first
		}
		n, err := c.conn.Read(hdr[:])
		if n == 0 {
			if isTimeout(err) && !c.closing.Load() {
				if len(c.slots) > 0 {
					continue // idle means no query outstanding
				}
				lim.timeoutIdle.Add(1)
			}
			return
		}
		// The first byte is in: the rest of the query has ReadTimeout.
		if err := c.conn.SetReadDeadline(time.Now().Add(lim.o.ReadTimeout)); err != nil {
			return
		}
		if n < 2 {
			if _, err := io.ReadFull(c.conn, hdr[1:]); err != nil {
				c.readFailed(err)
				return
			}
		}
		size := int(binary.BigEndian.Uint16(hdr[:]))
		if size < minTCPQuery || size > maxTCPQuery {
			return // not a query fqdngate serves
		}
		buf := getBuf()
		if _, err := io.ReadFull(c.conn, (*buf)[:size]); err != nil {
			putBuf(buf)
			c.readFailed(err)
			return
		}
		req := new(dns.Msg)
		err = req.Unpack((*buf)[:size])
		putBuf(buf)
		if err != nil {
			return // the stream cannot be trusted to be in step
		}
		if req.Response {
			continue // not a query: no answer, as over UDP
		}
		// A free slot, or the reader waits and reads nothing more.
		select {
		case c.slots <- struct{}{}:
		case <-c.s.done:
			return
		}
		c.work.Add(1)
		go c.handle(req)
	}
}

func (c *tcpConn) readFailed(err error) {
	if isTimeout(err) && !c.closing.Load() {
		c.s.lim.timeoutRead.Add(1)
	}
}

func (c *tcpConn) handle(req *dns.Msg) {
	defer func() {
		<-c.slots
		c.work.Done()
	}()
	c.s.h.ServeDNS(&tcpWriter{c: c}, req)
}

// write sends one reply, length first, as one whole write.
func (c *tcpConn) write(b []byte) (int, error) {
	if len(b) > dns.MaxMsgSize {
		return 0, dns.ErrBuf
	}
	var hdr [2]byte
	binary.BigEndian.PutUint16(hdr[:], uint16(len(b)))
	bufs := net.Buffers{hdr[:], b}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.conn.SetWriteDeadline(time.Now().Add(c.s.lim.o.WriteTimeout)); err != nil {
		return 0, err
	}
	if _, err := bufs.WriteTo(c.conn); err != nil {
		if isTimeout(err) {
			c.s.lim.timeoutWrite.Add(1)
		}
		// A reply cut short leaves the stream out of step.
		c.close()
		return 0, err
	}
	return len(b), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// tcpWriter is the dns.ResponseWriter of one query on a connection.
type tcpWriter struct{ c *tcpConn }

func (w *tcpWriter) LocalAddr() net.Addr  { return w.c.conn.LocalAddr() }
func (w *tcpWriter) RemoteAddr() net.Addr { return w.c.conn.RemoteAddr() }
func (w *tcpWriter) Network() string      { return "tcp" }
func (w *tcpWriter) WriteMsg(m *dns.Msg) error {
	bp := getBuf()
	defer putBuf(bp)
	b, err := m.PackBuffer(*bp)
	if err != nil {
		return err
	}
	_, err = w.c.write(b)
	return err
}
func (w *tcpWriter) Write(b []byte) (int, error) { return w.c.write(b) }

// Close closes the connection, as miekg's writer does.
func (w *tcpWriter) Close() error        { w.c.close(); return nil }
func (w *tcpWriter) TsigStatus() error   { return nil }
func (w *tcpWriter) TsigTimersOnly(bool) {}
func (w *tcpWriter) Hijack()             {}

// shutdownTCP stops the listeners and lets every connection finish the
// queries it has read, until ctx ends; then it closes every connection
// and returns.
func shutdownTCP(ctx context.Context, servers []*tcpServer, lim *tcpLimits) error {
	for _, s := range servers {
		s.close()
	}
	if lim == nil {
		return nil
	}
	lim.drain(false)
	done := make(chan struct{})
	go func() {
		for _, s := range servers {
			s.wg.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		// The queries still being worked on end on their own (the
		// upstream timeout and the hold budget bound them); their
		// replies have nowhere to go.
		lim.drain(true)
		return ctx.Err()
	}
}

// Serves reports whether addr is a client of some group of the current
// policy: the TCP listeners close other sources at accept.
func (h *Handler) Serves(addr netip.Addr) bool {
	return h.policy.Load().GroupOf(addr) != nil
}
