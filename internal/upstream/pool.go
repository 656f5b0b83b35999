package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// Defaults and bounds of the pool.
const (
	// DefaultQueryTimeout bounds one query across all its attempts; the
	// per-attempt bound is Options.Timeout. A client's stub resolver
	// gives up after about 5 s, so an answer later than that helps no one.
	DefaultQueryTimeout = 5 * time.Second
	// FailuresToDown consecutive failed exchanges mark an upstream down.
	FailuresToDown = 3
	// Probes of a down upstream start after ProbeMinBackoff and double up
	// to ProbeMaxBackoff.
	ProbeMinBackoff = 500 * time.Millisecond
	ProbeMaxBackoff = 30 * time.Second
	// maxInline is how many upstreams a query orders without allocating.
	maxInline = 8
)

// Reply is an upstream's answer.
type Reply struct {
	Msg *dns.Msg
	// Wire is the message as it arrived over UDP (nil over TCP and TLS),
	// so that the cache can keep it without packing Msg again.
	Wire []byte
	// From is the upstream that answered.
	From netip.AddrPort
}

// Observer hears what the pool does, for metrics. Its methods are called
// on the query's goroutine and must not block. upstream is Spec.String().
type Observer interface {
	// Exchange is one attempt with one upstream, failed ones too.
	Exchange(upstream string, rtt time.Duration, err error)
	// Skipped is a reply read and not believed; reason is a Skip constant.
	Skipped(upstream, reason string)
	// Health is an upstream marked up or down (every upstream is
	// reported up once when the pool starts).
	Health(upstream string, up bool)
}

type nopObserver struct{}

func (nopObserver) Exchange(string, time.Duration, error) {}
func (nopObserver) Skipped(string, string)                {}
func (nopObserver) Health(string, bool)                   {}

// Options configure a pool.
type Options struct {
	// Timeout bounds one attempt with one upstream.
	Timeout time.Duration
	// QueryTimeout bounds a query across all attempts;
	// DefaultQueryTimeout if zero.
	QueryTimeout time.Duration
	// Mark, when not zero, is set as SO_MARK on every upstream socket so
	// that fqdngate's own rules recognise its traffic.
	Mark uint32
	// CaseRandomization sends the query name in random case (0x20) and
	// wants it back exactly so.
	CaseRandomization bool
	// RootCAs verify TLS upstreams; nil means the system roots.
	RootCAs *x509.CertPool
	// Policy orders the upstreams; nil means round robin.
	Policy Policy
	// Observer hears exchanges, skipped replies and health; may be nil.
	Observer Observer
	// Log tells of upstreams going down and coming back; may be nil.
	Log *slog.Logger

	// after is the probe schedule's clock; time.After if nil. Tests step
	// it.
	after func(time.Duration) <-chan time.Time
}

// Pool forwards queries to a list of upstreams.
type Pool struct {
	proxies      []*Proxy
	policy       Policy
	timeout      time.Duration
	queryTimeout time.Duration
	foldCase     bool // case randomisation off: names compare in any case
	randomize    bool
	dialer       *net.Dialer
	obs          Observer
	log          *slog.Logger
	after        func(time.Duration) <-chan time.Time

	mu      sync.Mutex // guards closed and probers' Add
	closed  bool
	ctx     context.Context // ends at Close: probes in flight stop
	cancel  context.CancelFunc
	probers sync.WaitGroup
}

// New makes a pool of specs. Close stops its probers.
func New(specs []Spec, o Options) (*Pool, error) {
	if len(specs) == 0 {
		return nil, errors.New("upstream: no upstream")
	}
	if o.Timeout <= 0 {
		return nil, errors.New("upstream: no timeout")
	}
	dialer := &net.Dialer{Timeout: o.Timeout}
	if o.Mark != 0 {
		mark := int(o.Mark)
		dialer.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, mark)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	p := &Pool{
		policy: o.Policy, timeout: o.Timeout, queryTimeout: o.QueryTimeout,
		foldCase: !o.CaseRandomization, randomize: o.CaseRandomization,
		dialer: dialer, obs: o.Observer, log: o.Log, after: o.after,
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	if p.policy == nil {
		p.policy = &RoundRobin{}
	}
	if p.queryTimeout <= 0 {
		p.queryTimeout = DefaultQueryTimeout
	}
	if p.obs == nil {
		p.obs = nopObserver{}
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.after == nil {
		p.after = time.After
	}
	for _, s := range specs {
		x := &Proxy{spec: s, addr: s.Addr.String(), udpAddr: net.UDPAddrFromAddrPort(s.Addr), label: s.String(), pool: p}
		if s.TLS {
			x.tls = &tls.Config{
				ServerName: s.ServerName, RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12,
				ClientSessionCache: tls.NewLRUClientSessionCache(tlsIdleConns),
			}
			x.idle = make(chan *streamConn, tlsIdleConns)
		}
		p.proxies = append(p.proxies, x)
		p.obs.Health(x.label, true)
	}
	return p, nil
}

// Proxies are the pool's upstreams, in configuration order.
func (p *Pool) Proxies() []*Proxy { return p.proxies }

// Exchange sends q and returns the first valid answer, trying the
// upstreams in the policy's order within one overall deadline (the
// sooner of ctx's and the pool's query timeout). q's ID is replaced per
// attempt, its name sent in random case when that is on and restored
// before Exchange returns; q is the pool's to change meanwhile (the
// handler builds it for the upstreams, and a copy per attempt was an
// allocation per query).
func (p *Pool) Exchange(ctx context.Context, q *dns.Msg) (Reply, error) {
	if len(q.Question) != 1 {
		return Reply{}, errors.New("upstream: a query has one question")
	}
	deadline := time.Now().Add(p.queryTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	var inline [maxInline]*Proxy
	order := p.policy.Order(inline[:0], p.proxies)
	orig := q.Question[0].Name
	defer func() { q.Question[0].Name = orig }()
	var errs []error
	for _, x := range order {
		t0 := time.Now()
		if !t0.Before(deadline) {
			errs = append(errs, fmt.Errorf("%s: not asked: the query's deadline passed", x.label))
			continue
		}
		sent := orig
		if p.randomize {
			sent = randomCase(orig)
		}
		q.Question[0].Name = sent
		q.Id = newID()
		attempt := t0.Add(p.timeout)
		if deadline.Before(attempt) {
			attempt = deadline
		}
		rep, err := x.exchange(ctx, q, attempt)
		p.obs.Exchange(x.label, time.Since(t0), err)
		if ctx.Err() == nil {
			// A query its caller gave up on says nothing of the upstream.
			x.result(err)
		}
		if err == nil {
			rep.From = x.spec.Addr
			restoreCase(&rep, sent, orig)
			return rep, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", x.label, err))
		if ctx.Err() != nil {
			break
		}
	}
	return Reply{}, fmt.Errorf("%w: %w", ErrNoUpstream, errors.Join(errs...))
}

func (p *Pool) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// markDown starts x's prober unless one runs.
func (p *Pool) markDown(x *Proxy, err error) {
	p.obs.Health(x.label, false)
	p.log.Warn("upstream down: skipped until a probe answers", "upstream", x.label,
		"failures", FailuresToDown, "err", err)
	if !x.probing.CompareAndSwap(false, true) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		x.probing.Store(false)
		return
	}
	p.probers.Add(1)
	go p.prober(x)
}

func (p *Pool) markUp(x *Proxy) {
	p.obs.Health(x.label, true)
	p.log.Info("upstream up again", "upstream", x.label)
}

// prober probes a down upstream with exponential backoff until it
// answers (or a query finds it back), or the pool closes.
func (p *Pool) prober(x *Proxy) {
	defer p.probers.Done()
	backoff := ProbeMinBackoff
	for {
		select {
		case <-p.after(backoff):
		case <-p.ctx.Done():
			return
		}
		if x.down.Load() {
			if err := x.probe(p.ctx); err != nil {
				backoff = min(2*backoff, ProbeMaxBackoff)
				continue
			}
			x.fails.Store(0)
			if x.down.CompareAndSwap(true, false) {
				p.markUp(x)
			}
		}
		// Up. Hand over, unless it went down again meanwhile and the
		// markDown that saw this prober running did not start another.
		x.probing.Store(false)
		if !x.down.Load() || !x.probing.CompareAndSwap(false, true) {
			return
		}
		backoff = ProbeMinBackoff
	}
}

// Close stops the probers and closes idle connections. Queries in flight
// finish; Exchange must not be called after.
func (p *Pool) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		p.cancel()
	}
	p.mu.Unlock()
	p.probers.Wait()
	for _, x := range p.proxies {
		x.closeIdle()
	}
}
