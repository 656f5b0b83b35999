package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// Server is the UDP and TCP listeners on every configured address.
type Server struct {
	servers []*dns.Server
	udp     []*udpServer
	errc    chan error
}

// tcpIdle bounds how long an idle TCP client may hold a connection.
const tcpIdle = 10 * time.Second

// Listen binds every address on UDP and TCP and starts serving h. It
// returns once all listeners are bound, or the first bind error. UDP on a
// specific address is served by workers long-lived goroutines (at most
// that many queries at once per address); a wildcard address needs the
// reply to leave from the address the query came to, which miekg's server
// handles, so it serves those.
func Listen(addrs []netip.AddrPort, h dns.Handler, workers int) (*Server, error) {
	s := &Server{errc: make(chan error, 4*len(addrs)+64)}
	for _, a := range addrs {
		if !a.Addr().IsUnspecified() {
			u, err := listenUDP(a, h, max(1, workers))
			if err != nil {
				_ = s.Shutdown(context.Background())
				return nil, fmt.Errorf("listen %s/udp: %w", a, err)
			}
			s.udp = append(s.udp, u)
			u.serve(s.errc)
		}
		for _, netw := range []string{"udp", "tcp"} {
			if netw == "udp" && !a.Addr().IsUnspecified() {
				continue
			}
			started := make(chan struct{})
			srv := &dns.Server{
				Addr: a.String(), Net: netw, Handler: h, ReusePort: true,
				IdleTimeout:       func() time.Duration { return tcpIdle },
				NotifyStartedFunc: func() { close(started) },
			}
			go func() { s.errc <- srv.ListenAndServe() }()
			select {
			case <-started:
				s.servers = append(s.servers, srv)
			case err := <-s.errc:
				_ = s.Shutdown(context.Background())
				return nil, fmt.Errorf("listen %s/%s: %w", a, netw, err)
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

// Err receives a listener's error if one stops on its own.
func (s *Server) Err() <-chan error { return s.errc }

// Shutdown stops accepting and waits for in-flight queries until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs error
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
		errs = ctx.Err()
	}
	for _, srv := range s.servers {
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = errors.Join(errs, err)
		}
	}
	return errs
}
