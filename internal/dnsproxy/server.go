package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/miekg/dns"
)

// Server is the UDP and TCP listeners on every configured address.
type Server struct {
	servers []*dns.Server
	udp     []*udpServer
	tcp     []*tcpServer
	tcpLim  *tcpLimits
	errc    chan error
}

// Listen binds every address on UDP and TCP and starts serving h. It
// returns once all listeners are bound, or the first bind error. UDP on a
// specific address is served by workers long-lived goroutines (at most
// that many queries at once per address); a wildcard address needs the
// reply to leave from the address the query came to, which miekg's server
// handles, so it serves those. TCP is served by fqdngate's own listener
// on every address (a connection answers from the address it came to),
// bounded by tcp.
func Listen(addrs []netip.AddrPort, h dns.Handler, workers int, tcp TCPOptions, opts ...ListenOption) (*Server, error) {
	var o listenOptions
	for _, opt := range opts {
		opt(&o)
	}
	lc := o.listenConfig()
	s := &Server{errc: make(chan error, 4*len(addrs)+64), tcpLim: newTCPLimits(tcp)}
	for _, a := range addrs {
		t, err := listenTCP(a, h, s.tcpLim, lc)
		if err != nil {
			_ = s.Shutdown(context.Background())
			return nil, fmt.Errorf("listen %s/tcp: %w", a, err)
		}
		s.tcp = append(s.tcp, t)
		t.serve(s.errc)
		if !a.Addr().IsUnspecified() {
			u, err := listenUDP(a, h, max(1, workers), lc)
			if err != nil {
				_ = s.Shutdown(context.Background())
				return nil, fmt.Errorf("listen %s/udp: %w", a, err)
			}
			s.udp = append(s.udp, u)
			u.serve(s.errc)
		}
		if a.Addr().IsUnspecified() {
			started := make(chan struct{})
			srv := &dns.Server{
				Addr: a.String(), Net: "udp", Handler: h, ReusePort: true,
				NotifyStartedFunc: func() { close(started) },
			}
			go func() { s.errc <- srv.ListenAndServe() }()
			select {
			case <-started:
				s.servers = append(s.servers, srv)
			case err := <-s.errc:
				_ = s.Shutdown(context.Background())
				return nil, fmt.Errorf("listen %s/udp: %w", a, err)
			}
		}
	}
	return s, nil
}

// QueueDrops counts the UDP queries dropped because every worker was busy
// and the queue full (the client retries, as after a loss).
func (s *Server) QueueDrops() uint64 {
	var n uint64
	for _, u := range s.udp {
		n += u.dropped.Load()
	}
	return n
}

// TCPStats returns what the TCP listeners have done.
func (s *Server) TCPStats() TCPStats { return s.tcpLim.stats() }

// Err receives a listener's error if one stops on its own.
func (s *Server) Err() <-chan error { return s.errc }

// Shutdown stops accepting and waits for in-flight queries until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	errs := shutdownTCP(ctx, s.tcp, s.tcpLim)
	done := make(chan struct{})
	go func() {
		for _, u := range s.udp {
			u.close()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		errs = errors.Join(errs, ctx.Err())
	}
	for _, srv := range s.servers {
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = errors.Join(errs, err)
		}
	}
	return errs
}
