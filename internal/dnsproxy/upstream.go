package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// upstreamUDPSize is the EDNS buffer fqdngate offers upstreams: the DNS
// flag day 2020 value, which avoids IP fragmentation.
const upstreamUDPSize = 1232

// ErrNoUpstream is returned when every upstream failed.
var ErrNoUpstream = errors.New("no upstream answered")

// Pool forwards queries to a list of upstreams, starting each query at
// the next upstream in turn and failing over to the others.
type Pool struct {
	addrs   []netip.AddrPort
	timeout time.Duration
	udp     *dns.Client
	tcp     *dns.Client
	next    atomic.Uint32
	// idle holds connected UDP sockets per upstream, for reuse: a socket
	// per query costs socket, connect and close, most of a forwarder's
	// time. A socket serves at most socketUses queries and lives at most
	// socketAge, so source ports keep changing (spoofing resistance).
	idle    map[netip.AddrPort]chan *pooledConn
	observe func(up netip.AddrPort, rtt time.Duration, err error)
}

// SetObserver sets a function told every exchange with every upstream
// (failed ones too), for metrics; call it before use.
func (p *Pool) SetObserver(f func(up netip.AddrPort, rtt time.Duration, err error)) { p.observe = f }

// NewPool makes a pool. mark, when not zero, is set as SO_MARK on every
// upstream socket so that fqdngate's own rules recognise its traffic.
func NewPool(addrs []netip.AddrPort, timeout time.Duration, mark uint32) *Pool {
	dialer := &net.Dialer{Timeout: timeout}
	if mark != 0 {
		dialer.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
			}); err != nil {
				return err
			}
			return serr
		}
	}
	p := &Pool{
		addrs:   addrs,
		timeout: timeout,
		udp:     &dns.Client{Net: "udp", Dialer: dialer, Timeout: timeout, UDPSize: upstreamUDPSize},
		tcp:     &dns.Client{Net: "tcp", Dialer: dialer, Timeout: timeout},
		idle:    make(map[netip.AddrPort]chan *pooledConn, len(addrs)),
	}
	for _, a := range addrs {
		p.idle[a] = make(chan *pooledConn, idleSockets)
	}
	return p
}

// Exchange sends q and returns the first valid reply and who gave it.
// q's ID is replaced by a fresh random one per attempt.
func (p *Pool) Exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, netip.AddrPort, error) {
	start := int(p.next.Add(1))
	var errs error
	for i := range p.addrs {
		up := p.addrs[(start+i)%len(p.addrs)]
		t0 := time.Now()
		r, err := p.exchangeOne(ctx, q, up)
		if p.observe != nil {
			p.observe(up, time.Since(t0), err)
		}
		if err == nil {
			return r, up, nil
		}
		errs = errors.Join(errs, fmt.Errorf("%s: %w", up, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, netip.AddrPort{}, fmt.Errorf("%w: %w", ErrNoUpstream, errs)
}

// Bounds of UDP socket reuse.
const (
	idleSockets = 256
	socketUses  = 256
	socketAge   = 10 * time.Second
)

type pooledConn struct {
	*dns.Conn
	uses    int
	created time.Time
}

// exchangeUDP sends m on an idle connected socket to up (or a new one) and
// reads the reply with m's ID (miekg skips replies with other IDs, e.g. a
// late one for an earlier query). The socket goes back only if the
// exchange succeeded.
func (p *Pool) exchangeUDP(ctx context.Context, m *dns.Msg, up netip.AddrPort) (*dns.Msg, error) {
	var pc *pooledConn
	select {
	case pc = <-p.idle[up]:
	default:
		c, err := p.udp.DialContext(ctx, up.String())
		if err != nil {
			return nil, err
		}
		pc = &pooledConn{Conn: c, created: time.Now()}
	}
	r, _, err := p.udp.ExchangeWithConnContext(ctx, m, pc.Conn)
	pc.uses++
	if err != nil || pc.uses >= socketUses || time.Since(pc.created) > socketAge {
		pc.Close()
		return r, err
	}
	select {
	case p.idle[up] <- pc:
	default:
		pc.Close()
	}
	return r, nil
}

func (p *Pool) exchangeOne(ctx context.Context, q *dns.Msg, up netip.AddrPort) (*dns.Msg, error) {
	m := q.Copy()
	m.Id = dns.Id()
	r, err := p.exchangeUDP(ctx, m, up)
	if err == nil && r.Truncated {
		m.Id = dns.Id()
		r, _, err = p.tcp.ExchangeContext(ctx, m, up.String())
	}
	if err != nil {
		return nil, err
	}
	if len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, m.Question[0].Name) ||
		r.Question[0].Qtype != m.Question[0].Qtype || r.Question[0].Qclass != m.Question[0].Qclass {
		return nil, errors.New("reply does not match the question")
	}
	return r, nil
}
