package dnsproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
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
	dialer  *net.Dialer
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
		dialer:  dialer,
		tcp:     &dns.Client{Net: "tcp", Dialer: dialer, Timeout: timeout},
		idle:    make(map[netip.AddrPort]chan *pooledConn, len(addrs)),
	}
	for _, a := range addrs {
		p.idle[a] = make(chan *pooledConn, idleSockets)
	}
	return p
}

// Reply is an upstream's answer.
type Reply struct {
	Msg *dns.Msg
	// Wire is the message as it arrived over UDP (nil over TCP), so that
	// the cache can keep it without packing Msg again.
	Wire []byte
	// From is the upstream that answered.
	From netip.AddrPort
}

// Exchange sends q and returns the first valid reply.
// q's ID is replaced by a fresh random one per attempt; q is changed.
func (p *Pool) Exchange(ctx context.Context, q *dns.Msg) (Reply, error) {
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
			r.From = up
			return r, nil
		}
		errs = errors.Join(errs, fmt.Errorf("%s: %w", up, err))
		if ctx.Err() != nil {
			break
		}
	}
	return Reply{}, fmt.Errorf("%w: %w", ErrNoUpstream, errs)
}

// Bounds of UDP socket reuse.
const (
	idleSockets = 256
	socketUses  = 256
	socketAge   = 10 * time.Second
)

type pooledConn struct {
	*net.UDPConn
	uses    int
	created time.Time
}

// longAgo is a deadline in the past: it wakes a blocked read at once.
var longAgo = time.Unix(1, 0)

// exchangeUDP sends m on an idle connected socket to up (or a new one) and
// reads the reply with m's ID, skipping others (a late reply to an earlier
// query on the same socket). The kernel drops datagrams from any other
// source, the socket being connected. The socket goes back only if the
// exchange succeeded. The buffers are pooled and the deadline is the
// socket's own, not a context timer: per query allocations were a fifth
// of the forwarding cost.
func (p *Pool) exchangeUDP(ctx context.Context, m *dns.Msg, up netip.AddrPort) (Reply, error) {
	var pc *pooledConn
	select {
	case pc = <-p.idle[up]:
	default:
		c, err := p.dialer.DialContext(ctx, "udp", up.String())
		if err != nil {
			return Reply{}, err
		}
		pc = &pooledConn{UDPConn: c.(*net.UDPConn), created: time.Now()}
	}
	rep, err := p.roundTrip(ctx, pc.UDPConn, m)
	pc.uses++
	if err != nil || pc.uses >= socketUses || time.Since(pc.created) > socketAge {
		pc.Close()
		return rep, err
	}
	select {
	case p.idle[up] <- pc:
	default:
		pc.Close()
	}
	return rep, nil
}

func (p *Pool) roundTrip(ctx context.Context, c *net.UDPConn, m *dns.Msg) (Reply, error) {
	bp := getBuf()
	defer putBuf(bp)
	wire, err := m.PackBuffer(*bp)
	if err != nil {
		return Reply{}, fmt.Errorf("pack: %w", err)
	}
	deadline := time.Now().Add(p.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.SetDeadline(deadline); err != nil {
		return Reply{}, err
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(longAgo) })
		defer stop()
	}
	if _, err := c.Write(wire); err != nil {
		return Reply{}, err
	}
	buf := (*bp)[:cap(*bp)]
	// The reply cannot be there yet: let the goroutines that are ready
	// run first (other queries' work), so that under load the read
	// finds it. Reading at once failed with EAGAIN and parked the
	// goroutine on the poller, two reads and a wake-up per exchange: with
	// the yield the unique mix made one read per exchange and 8% more
	// queries a second with backend none (2% enforcing), in side-by-side
	// pairs. Alone, the yield returns at once.
	runtime.Gosched()
	for {
		n, err := c.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return Reply{}, ctx.Err()
			}
			return Reply{}, err
		}
		if n < dnsHeaderLen || binary.BigEndian.Uint16(buf) != m.Id {
			continue
		}
		r := new(dns.Msg)
		if err := r.Unpack(buf[:n]); err != nil {
			return Reply{}, fmt.Errorf("reply: %w", err)
		}
		return Reply{Msg: r, Wire: append([]byte(nil), buf[:n]...)}, nil
	}
}

const dnsHeaderLen = 12

// exchangeOne sets q's ID: q is the pool's to change (the handler builds
// it for the upstreams), and a copy per attempt was an allocation per
// query.
func (p *Pool) exchangeOne(ctx context.Context, q *dns.Msg, up netip.AddrPort) (Reply, error) {
	m := q
	m.Id = newID()
	rep, err := p.exchangeUDP(ctx, m, up)
	if err == nil && rep.Msg.Truncated {
		m.Id = newID()
		rep.Wire = nil
		rep.Msg, _, err = p.tcp.ExchangeContext(ctx, m, up.String())
	}
	if err != nil {
		return Reply{}, err
	}
	r := rep.Msg
	if len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, m.Question[0].Name) ||
		r.Question[0].Qtype != m.Question[0].Qtype || r.Question[0].Qclass != m.Question[0].Qclass {
		return Reply{}, errors.New("reply does not match the question")
	}
	return rep, nil
}

// newID is a query ID from the runtime's ChaCha8 generator: unpredictable
// (spoofing resistance) without the read from crypto/rand that dns.Id
// costs per query.
func newID() uint16 { return uint16(rand.Uint32()) }
