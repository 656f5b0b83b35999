package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Bounds of DNS over TLS connection reuse. Connections carry one query
// at a time (RFC 7766 allows pipelining, but a reply then has to be
// matched to its query, and one conn per query in flight needs no
// matching); a few stay open between queries, each for at most
// tlsIdleTimeout, so that a quiet gateway does not hold connections the
// server has long dropped.
const (
	tlsIdleConns   = 8
	tlsIdleTimeout = 10 * time.Second
)

// Proxy is one upstream: its transport and its health.
type Proxy struct {
	spec    Spec
	addr    string // spec.Addr as Dial takes it
	udpAddr *net.UDPAddr
	label   string // spec.String(), the metrics label
	pool    *Pool
	tls     *tls.Config // nil for plain DNS

	idle chan *streamConn // idle TLS connections, the most recent last

	// fails counts consecutive failed exchanges; down is set at
	// FailuresToDown of them and cleared by a good reply or probe.
	fails   atomic.Int32
	down    atomic.Bool
	probing atomic.Bool // a prober goroutine runs
}

// Spec is the upstream's configuration entry.
func (x *Proxy) Spec() Spec { return x.spec }

// Down reports whether the upstream is marked down.
func (x *Proxy) Down() bool { return x.down.Load() }

type streamConn struct {
	dns.Conn
	used time.Time
}

// exchange sends m (its ID and question set by the pool) and returns the
// first valid reply before deadline. A truncated UDP reply is asked again
// over TCP. A reply with SERVFAIL, REFUSED, FORMERR or NOTIMP is an
// rcodeError.
func (x *Proxy) exchange(ctx context.Context, m *dns.Msg, deadline time.Time) (Reply, error) {
	var rep Reply
	var err error
	if x.tls != nil {
		rep, err = x.exchangeTLS(ctx, m, deadline)
	} else {
		rep, err = x.exchangeUDP(ctx, m, deadline)
		if err == nil && rep.Msg.Truncated {
			m.Id = newID()
			rep, err = x.exchangeTCP(ctx, m, deadline)
		}
	}
	if err != nil {
		return Reply{}, err
	}
	switch rep.Msg.Rcode {
	case dns.RcodeServerFailure, dns.RcodeRefused, dns.RcodeFormatError, dns.RcodeNotImplemented:
		return Reply{}, rcodeError(rep.Msg.Rcode)
	}
	return rep, nil
}

// longAgo is a deadline in the past: it wakes a blocked read at once.
var longAgo = time.Unix(1, 0)

// cancelOnDone wakes c's blocked reads when ctx ends; call stop after.
func cancelOnDone(ctx context.Context, c net.Conn) (stop func() bool) {
	if ctx.Done() == nil {
		return func() bool { return false }
	}
	return context.AfterFunc(ctx, func() { _ = c.SetDeadline(longAgo) })
}

// exchangeUDP asks over a socket of its own, opened for this query and
// closed after it. The kernel gives each one a random ephemeral port, so
// an off-path attacker must guess port and ID (and the 0x20 case) of
// every query anew, and a reply the socket sees that is not the one is
// never a late answer to an earlier query: it is counted as skipped. A
// pool of sockets serving many queries each (the old design: 256 per
// socket over 10 s) left the ID as the only entropy for the port's
// lifetime; the socket per query costs about a socket, a connect and a
// close (BenchmarkExchange measures it against that pool).
//
// The socket is connected, so the kernel drops datagrams from any other
// address or port before fqdngate sees them: a reply forged from another
// source is never read.
func (x *Proxy) exchangeUDP(ctx context.Context, m *dns.Msg, deadline time.Time) (Reply, error) {
	bp := getBuf(&udpBufs)
	defer putBuf(&udpBufs, bp)
	wire, err := m.PackBuffer(*bp)
	if err != nil {
		return Reply{}, fmt.Errorf("pack: %w", err)
	}
	c, err := x.dialUDP(ctx)
	if err != nil {
		return Reply{}, err
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return Reply{}, err
	}
	defer cancelOnDone(ctx, c)()
	if _, err := c.Write(wire); err != nil {
		return Reply{}, err
	}
	r, reply, err := x.readReply(ctx, c, (*bp)[:cap(*bp)], m)
	if err != nil {
		return Reply{}, err
	}
	return Reply{Msg: r, Wire: append([]byte(nil), reply...)}, nil
}

// readReply reads from c until the reply to m, skipping (and counting)
// every message that is not it, until c's deadline. reply is the wire
// form, in buf.
func (x *Proxy) readReply(ctx context.Context, c io.Reader, buf []byte, m *dns.Msg) (r *dns.Msg, reply []byte, err error) {
	var skipped string
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, nil, x.readError(ctx, err, skipped)
		}
		r, why := check(buf[:n], m.Id, m.Question[0], x.pool.foldCase)
		if why != "" {
			skipped = why
			x.pool.obs.Skipped(x.label, why)
			continue
		}
		return r, buf[:n], nil
	}
}

// dialUDP opens the query's socket. Without a mark, DialUDP to the
// parsed address skips the dialer's address resolution (a third of the
// socket's cost in allocations).
func (x *Proxy) dialUDP(ctx context.Context) (net.Conn, error) {
	if x.pool.dialer.Control == nil {
		return net.DialUDP("udp", nil, x.udpAddr)
	}
	return x.pool.dialer.DialContext(ctx, "udp", x.addr)
}

func (x *Proxy) readError(ctx context.Context, err error, skipped string) error {
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	if skipped != "" {
		return fmt.Errorf("%w; skipped %s", err, describe(skipped))
	}
	return err
}

// exchangeTCP asks over a TCP connection of its own (truncated replies
// only: rare enough not to keep connections).
func (x *Proxy) exchangeTCP(ctx context.Context, m *dns.Msg, deadline time.Time) (Reply, error) {
	c, err := x.pool.dialer.DialContext(ctx, "tcp", x.addr)
	if err != nil {
		return Reply{}, err
	}
	sc := &streamConn{Conn: dns.Conn{Conn: c}}
	defer sc.Close()
	return x.roundTripStream(ctx, sc, m, deadline)
}

// exchangeTLS asks over an idle TLS connection, or a new one. A reused
// connection the server closed meanwhile fails before any reply: that is
// retried once on a new connection.
func (x *Proxy) exchangeTLS(ctx context.Context, m *dns.Msg, deadline time.Time) (Reply, error) {
	for {
		sc := x.takeIdle(time.Now())
		reused := sc != nil
		if !reused {
			var err error
			if sc, err = x.dialTLS(ctx, deadline); err != nil {
				return Reply{}, err
			}
		}
		rep, err := x.roundTripStream(ctx, sc, m, deadline)
		if err == nil {
			x.putIdle(sc)
			return rep, nil
		}
		sc.Close()
		var ne net.Error
		if !reused || ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout() {
			return Reply{}, err
		}
	}
}

func (x *Proxy) dialTLS(ctx context.Context, deadline time.Time) (*streamConn, error) {
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	d := tls.Dialer{NetDialer: x.pool.dialer, Config: x.tls}
	c, err := d.DialContext(dctx, "tcp", x.addr)
	if err != nil {
		return nil, fmt.Errorf("dial tls: %w", err)
	}
	return &streamConn{Conn: dns.Conn{Conn: c}}, nil
}

// takeIdle returns an idle connection used within tlsIdleTimeout, closing
// the older ones, or nil.
func (x *Proxy) takeIdle(now time.Time) *streamConn {
	for {
		select {
		case sc := <-x.idle:
			if now.Sub(sc.used) <= tlsIdleTimeout {
				return sc
			}
			sc.Close()
		default:
			return nil
		}
	}
}

func (x *Proxy) putIdle(sc *streamConn) {
	sc.used = time.Now()
	if x.pool.isClosed() {
		sc.Close()
		return
	}
	select {
	case x.idle <- sc:
	default:
		sc.Close()
	}
}

func (x *Proxy) closeIdle() {
	for {
		select {
		case sc := <-x.idle:
			sc.Close()
		default:
			return
		}
	}
}

// roundTripStream writes m on a stream connection (the library frames it
// with its length) and reads until the reply, skipping others.
func (x *Proxy) roundTripStream(ctx context.Context, sc *streamConn, m *dns.Msg, deadline time.Time) (Reply, error) {
	bp := getBuf(&streamBufs)
	defer putBuf(&streamBufs, bp)
	wire, err := m.PackBuffer(*bp)
	if err != nil {
		return Reply{}, fmt.Errorf("pack: %w", err)
	}
	if err := sc.SetDeadline(deadline); err != nil {
		return Reply{}, err
	}
	defer cancelOnDone(ctx, sc.Conn.Conn)()
	if _, err := sc.Write(wire); err != nil {
		return Reply{}, err
	}
	r, _, err := x.readReply(ctx, sc, (*bp)[:cap(*bp)], m)
	if err != nil {
		return Reply{}, err
	}
	// Wire is for UDP replies only: the cache packs what came over a
	// stream.
	return Reply{Msg: r}, nil
}

// result updates the health after an exchange.
func (x *Proxy) result(err error) {
	if !transportError(err) {
		if x.fails.Load() != 0 {
			x.fails.Store(0)
		}
		if x.down.CompareAndSwap(true, false) {
			x.pool.markUp(x)
		}
		return
	}
	if x.fails.Add(1) >= FailuresToDown && x.down.CompareAndSwap(false, true) {
		x.pool.markDown(x, err)
	}
}

// probe asks the upstream for the root's NS records, as CoreDNS does:
// any valid reply, whatever its rcode, shows that it is back.
func (x *Proxy) probe(ctx context.Context) error {
	m := new(dns.Msg)
	m.Question = []dns.Question{{Name: ".", Qtype: dns.TypeNS, Qclass: dns.ClassINET}}
	m.Id = newID()
	_, err := x.exchange(ctx, m, time.Now().Add(x.pool.timeout))
	if transportError(err) {
		return err
	}
	return nil
}
