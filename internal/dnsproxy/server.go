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
	errc    chan error
}

// tcpIdle bounds how long an idle TCP client may hold a connection.
const tcpIdle = 10 * time.Second

// Listen binds every address on UDP and TCP and starts serving h. It
// returns once all listeners are bound, or the first bind error.
func Listen(addrs []netip.AddrPort, h dns.Handler) (*Server, error) {
	s := &Server{errc: make(chan error, 2*len(addrs))}
	for _, a := range addrs {
		for _, netw := range []string{"udp", "tcp"} {
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

// Err receives a listener's error if one stops on its own.
func (s *Server) Err() <-chan error { return s.errc }

// Shutdown stops accepting and waits for in-flight queries until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs error
	for _, srv := range s.servers {
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = errors.Join(errs, err)
		}
	}
	return errs
}
