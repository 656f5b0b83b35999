package main

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fqdngate/fqdngate/internal/lab"
)

// The load side is built so that it costs as little as a new TCP flow
// can: each client and each server worker is a goroutine locked to an OS
// thread that entered its namespace once, and makes blocking system
// calls on it (socket, connect, write, read, close), no TLS and no Go
// poller. A client sends a ClientHello recorded once from Go's
// crypto/tls, with the flow's number in its random; the server reads the
// whole ClientHello, notes when it had it, and closes. The client then
// closes with a reset (SO_LINGER 0), so that no socket lingers in
// TIME_WAIT and a 4-tuple can be used again at once.

// recordHello is the first flight of a Go crypto/tls client for name:
// its ClientHello, with today's hybrid post-quantum key share, about
// 1.8 kB, so two TCP segments.
func recordHello(name string) ([]byte, error) {
	c, s := net.Pipe()
	defer s.Close()
	go func() {
		tc := tls.Client(c, &tls.Config{ServerName: name, InsecureSkipVerify: true})
		_ = tc.Handshake()
		c.Close()
	}()
	var hdr [5]byte
	if _, err := io.ReadFull(s, hdr[:]); err != nil {
		return nil, fmt.Errorf("record the ClientHello: %w", err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
	if _, err := io.ReadFull(s, body); err != nil {
		return nil, fmt.Errorf("record the ClientHello: %w", err)
	}
	return append(hdr[:], body...), nil
}

// idOffset is where a flow's number is written into the ClientHello: the
// first bytes of its random (record header 5, handshake header 4,
// version 2).
const idOffset = 11

// clock is the load's time base: starts and arrivals are nanoseconds
// since it, on the monotonic clock, so that one process can time a flow
// from the device's connect to the server's read.
var clock = time.Now()

func nanos() int64 { return int64(time.Since(clock)) }

// flows holds each flow's start and the time from its start until the
// server had its whole ClientHello, by flow number.
type flows struct {
	next  atomic.Int64
	start []atomic.Int64
	lat   []atomic.Int64
	// conn is the time connect took (the SYN's way there and the
	// SYN-ACK's back).
	conn []atomic.Int64
}

func newFlows(n int) *flows {
	return &flows{start: make([]atomic.Int64, n), lat: make([]atomic.Int64, n), conn: make([]atomic.Int64, n)}
}

// connects are the recorded flows' connect times.
func (f *flows) connects() []time.Duration {
	n := min(int(f.next.Load()), len(f.conn))
	out := make([]time.Duration, 0, n)
	for i := range n {
		if d := f.conn[i].Load(); d > 0 {
			out = append(out, time.Duration(d))
		}
	}
	return out
}

// latencies are the recorded flows' times, in flow order.
func (f *flows) latencies() []time.Duration {
	n := min(int(f.next.Load()), len(f.lat))
	out := make([]time.Duration, 0, n)
	for i := range n {
		if d := f.lat[i].Load(); d > 0 {
			out = append(out, time.Duration(d))
		}
	}
	return out
}

// inNS locks the calling goroutine to its thread and moves the thread
// into ns for good: the goroutine must end without unlocking, so that the
// runtime throws the thread away rather than reusing it elsewhere.
func inNS(ns *lab.NS) error {
	runtime.LockOSThread()
	if err := unix.Setns(ns.FD(), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter namespace %s: %w", ns.Name, err)
	}
	return nil
}

// server accepts on addr in ns with workers threads and records, for
// each ClientHello it reads whole, its flow's time.
type server struct {
	fd    int
	hello int
	got   atomic.Int64
	wg    sync.WaitGroup
	cur   atomic.Pointer[flows]
}

func startServer(ns *lab.NS, addr netip.AddrPort, helloLen, workers int) (*server, error) {
	s := &server{fd: -1, hello: helloLen}
	errc := make(chan error, 1)
	go func() {
		if err := inNS(ns); err != nil {
			errc <- err
			return
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			err = unix.Bind(fd, &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()})
		}
		if err == nil {
			err = unix.Listen(fd, 4096)
		}
		s.fd = fd
		errc <- err
	}()
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	for range workers {
		s.wg.Go(func() {
			if inNS(ns) != nil {
				return
			}
			buf := make([]byte, helloLen)
			for {
				c, _, err := unix.Accept4(s.fd, unix.SOCK_CLOEXEC)
				if err != nil {
					if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED) {
						continue
					}
					return // the listener was shut down
				}
				s.serve(c, buf)
			}
		})
	}
	return s, nil
}

// serve reads one ClientHello and closes.
func (s *server) serve(c int, buf []byte) {
	defer unix.Close(c)
	_ = unix.SetsockoptTimeval(c, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 3})
	n := 0
	for n < len(buf) {
		m, err := unix.Read(c, buf[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || m <= 0 {
			return
		}
		n += m
	}
	at := nanos()
	s.got.Add(1)
	if f := s.cur.Load(); f != nil {
		if id := int(binary.BigEndian.Uint64(buf[idOffset:])); id >= 0 && id < len(f.start) {
			f.lat[id].Store(at - f.start[id].Load())
		}
	}
}

func (s *server) close() {
	if s.fd >= 0 {
		_ = unix.Shutdown(s.fd, unix.SHUT_RDWR)
		unix.Close(s.fd)
	}
	s.wg.Wait()
}

// load runs clients workers in ns, each opening flows to dst one after
// the other until stop is closed or f has no flow number left, and
// returns the flows that failed (the first error of them in errp).
func load(ns *lab.NS, dst netip.AddrPort, hello []byte, f *flows, clients int, stop <-chan struct{}) (failed int64, first error) {
	var wg sync.WaitGroup
	var bad atomic.Int64
	var once sync.Once
	sa := &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	for range clients {
		wg.Go(func() {
			if err := inNS(ns); err != nil {
				once.Do(func() { first = err })
				bad.Add(1)
				return
			}
			msg := append([]byte(nil), hello...)
			var buf [64]byte
			for {
				select {
				case <-stop:
					return
				default:
				}
				id := f.next.Add(1) - 1
				if int(id) >= len(f.start) {
					return
				}
				binary.BigEndian.PutUint64(msg[idOffset:], uint64(id))
				start := nanos()
				f.start[id].Store(start)
				if err := flow(sa, msg, buf[:], func() { f.conn[id].Store(nanos() - start) }); err != nil {
					once.Do(func() { first = err })
					bad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return bad.Load(), first
}

// flow opens one TCP connection, sends msg, waits for the server to
// close, and resets it; connected is called once connect returns.
func flow(sa unix.Sockaddr, msg, buf []byte, connected func()) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer func() {
		_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		unix.Close(fd)
	}()
	tv := &unix.Timeval{Sec: 3}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, tv)
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, tv)
	if err := unix.Connect(fd, sa); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	connected()
	for n := 0; n < len(msg); {
		m, err := unix.Write(fd, msg[n:])
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		n += m
	}
	for {
		m, err := unix.Read(fd, buf)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return fmt.Errorf("read: %w", err)
		case m == 0:
			return nil // the server had it all and closed
		}
	}
}
