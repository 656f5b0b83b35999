package feeds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// Bounds of a push target; PushOptions may lower them for tests.
const (
	// defaultQueue is the answers a target's queue holds; beyond it an
	// answer is counted and left to the next resync (never waited for).
	defaultQueue = 8192
	// requestTimeout bounds one request to a firewall.
	requestTimeout = 10 * time.Second
	// minBackoff and maxBackoff pace the resync attempts while a firewall
	// is unreachable.
	minBackoff = 250 * time.Millisecond
	maxBackoff = 10 * time.Second
	// authPause is how long a target whose key was refused waits before
	// it tries again: a wrong key is not retried at the rate of answers.
	authPause = 5 * time.Minute
	// fortiRefresh is how often a FortiGate feed is replaced by what is
	// live (it has no per-entry timeout: this is how addresses expire).
	fortiRefresh = 30 * time.Second
	// maxResponse bounds what is read of a firewall's answer.
	maxResponse = 1 << 20
	// maxTags bounds the cache of rendered tags.
	maxTags = 4096
	// overflowResync is the least time between resyncs for answers lost
	// to a full queue.
	overflowResync = 5 * time.Second
)

// Errors a held answer fails with.
var (
	ErrQueueFull    = errors.New("feeds: push queue full")
	ErrPushRefused  = errors.New("feeds: the firewall refused the push")
	ErrFirewallDown = errors.New("feeds: firewall unreachable")
)

// pushEntry is one address for one tag (PAN-OS) or feed name (FortiGate).
type pushEntry struct {
	Tag     string
	Addr    netip.Addr
	Expires time.Time
}

type failKind uint8

const (
	ok            failKind = iota
	failTransient          // network, timeout, HTTP 5xx: retried (with a resync)
	failAuth               // the key was refused: paused
	failHTTP               // the request was refused: dropped
)

// pushResult is a firewall's answer to one request.
type pushResult struct {
	kind failKind
	msg  string
	// failed are the entries the firewall refused, with its message;
	// the others were taken.
	failed      map[netip.Addr]string
	failedNames []string
}

func (r *pushResult) merge(o pushResult) {
	for a, m := range o.failed {
		if r.failed == nil {
			r.failed = map[netip.Addr]string{}
		}
		r.failed[a] = m
	}
	r.failedNames = append(r.failedNames, o.failedNames...)
}

// protocol is one firewall API.
type protocol interface {
	send(ctx context.Context, c *http.Client, entries []pushEntry, now time.Time) pushResult
	// resync tells the firewall everything live; names are every tag or
	// feed the policy has, so that one with nothing live is emptied.
	resync(ctx context.Context, c *http.Client, live []pushEntry, names []string, now time.Time) pushResult
}

// PushOptions configure one push target.
type PushOptions struct {
	// Type is "panos" or "fortigate".
	Type string
	// URL is https://host[:port].
	URL string
	Key string
	// RootCAs verify the firewall's certificate; nil for the system's.
	RootCAs *x509.CertPool
	// Tag is the tag (panos) or feed name (fortigate) template, with
	// {client} and {rule}.
	Tag       string
	BatchWait time.Duration
	BatchMax  int
	// Hold: answers wait for this firewall (see Hold).
	Hold bool
	// Label names the target in metrics and logs ("panos-0").
	Label  string
	Ledger *ledger.Ledger
	// Policy is the policy in force; a resync walks its groups.
	Policy  func() *policy.Policy
	Metrics *Metrics
	Log     *slog.Logger
	Now     func() time.Time
	// Zero takes the package's bounds.
	Queue                                             int
	MinBackoff, MaxBackoff, AuthPause, OverflowResync time.Duration
	Refresh                                           time.Duration
}

// job is one released answer for one target.
type job struct {
	group   string
	rules   []string
	addrs   []netip.Addr
	expires time.Time
	at      time.Time
	// done, if not nil, hears the firewall's verdict (hold).
	done chan error
}

func (j *job) size() int { return len(j.addrs) * len(j.rules) }

// Pusher sends one firewall every answer it is offered.
type Pusher struct {
	o      PushOptions
	proto  protocol
	client *http.Client
	queue  chan *job
	stats  PushStats
	// depth is the queue's gauge, bound to the target's label once: the
	// lookup was two per answer.
	depth prometheus.Gauge
	// lost is set when an answer did not fit in the queue: the worker
	// then resyncs, which carries it (it is in the ledger).
	lost atomic.Bool

	// Only Run's goroutine touches these.
	resyncDue  bool
	down       bool
	lastResync time.Time
	// tags caches rendered tags by group and rule; bounded by the
	// policies' groups times rules.
	tags map[[2]string]string
}

// PushStats count what a target did.
type PushStats struct {
	Batches, Acked, Resyncs, Overflow   atomic.Uint64
	Transient, AuthFailures, HTTPErrors atomic.Uint64
	EntryErrors                         atomic.Uint64
}

// NewPusher makes a target; Run sends.
func NewPusher(o PushOptions) (*Pusher, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
	o.Queue = orDefault(o.Queue, defaultQueue)
	o.MinBackoff = orDefault(o.MinBackoff, minBackoff)
	o.MaxBackoff = orDefault(o.MaxBackoff, maxBackoff)
	o.AuthPause = orDefault(o.AuthPause, authPause)
	o.OverflowResync = orDefault(o.OverflowResync, overflowResync)
	o.BatchMax = orDefault(o.BatchMax, 500)
	o.BatchWait = orDefault(o.BatchWait, 50*time.Millisecond)
	base := strings.TrimSuffix(o.URL, "/")
	p := &Pusher{o: o, queue: make(chan *job, o.Queue), depth: o.Metrics.depth.WithLabelValues(o.Label), tags: map[[2]string]string{}}
	switch o.Type {
	case "panos":
		p.proto = panos{base: base, key: o.Key}
	case "fortigate":
		p.proto = fortigate{base: base, key: o.Key}
		p.o.Refresh = orDefault(o.Refresh, fortiRefresh)
	default:
		return nil, fmt.Errorf("feeds: push type %q is not panos or fortigate", o.Type)
	}
	p.client = &http.Client{Timeout: requestTimeout, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute, ForceAttemptHTTP2: true,
	}}
	return p, nil
}

func orDefault[T comparable](v, d T) T {
	var zero T
	if v == zero {
		return d
	}
	return v
}

// Stats returns the target's counters.
func (p *Pusher) Stats() *PushStats { return &p.stats }

// Holds reports whether answers wait for this target.
func (p *Pusher) Holds() bool { return p.o.Hold }

// tag renders the tag or feed name of group and rule (Run's goroutine
// only).
func (p *Pusher) tag(group, rule string) string {
	k := [2]string{group, rule}
	if t, ok := p.tags[k]; ok {
		return t
	}
	t := strings.NewReplacer("{client}", group, "{rule}", rule).Replace(p.o.Tag)
	if p.o.Type == "fortigate" {
		t = fortiName(t)
	}
	if len(p.tags) >= maxTags {
		clear(p.tags)
	}
	p.tags[k] = t
	return t
}

// Offer queues a released answer without waiting; false when the queue
// was full (counted: the next resync carries it).
func (p *Pusher) Offer(a *ledger.Answer) bool {
	return p.offer(&job{group: a.Group, rules: a.Rules, addrs: slices.Clone(a.Addrs), expires: a.Expires, at: p.o.Now()})
}

// OfferHold queues an answer that waits: the channel hears nil once the
// firewall acknowledged it, or why not.
func (p *Pusher) OfferHold(a *ledger.Answer) (<-chan error, error) {
	j := &job{group: a.Group, rules: a.Rules, addrs: slices.Clone(a.Addrs), expires: a.Expires, at: p.o.Now(), done: make(chan error, 1)}
	if !p.offer(j) {
		return nil, ErrQueueFull
	}
	return j.done, nil
}

func (p *Pusher) offer(j *job) bool {
	if j.size() == 0 {
		if j.done != nil {
			j.done <- nil
		}
		return true
	}
	select {
	case p.queue <- j:
		p.depth.Add(float64(j.size()))
		return true
	default:
		p.stats.Overflow.Add(1)
		p.o.Metrics.overflow.WithLabelValues(p.o.Label).Inc()
		p.lost.Store(true)
		return false
	}
}

func (p *Pusher) dequeued(j *job) {
	p.depth.Sub(float64(j.size()))
}

// Run sends until ctx ends: a resync first (the firewall may have lost
// what it held while fqdngate was down), then batches. A transient
// failure makes the next step a resync, retried with backoff; a refused
// key pauses the target; a refused request is dropped.
func (p *Pusher) Run(ctx context.Context) {
	p.resyncDue = true
	backoff := p.o.MinBackoff
	var refresh <-chan time.Time
	if p.o.Refresh > 0 {
		t := time.NewTicker(p.o.Refresh)
		defer t.Stop()
		refresh = t.C
	}
	defer p.drain(ctx.Err())
	for ctx.Err() == nil {
		if p.resyncDue {
			res := p.resync(ctx)
			switch {
			case ctx.Err() != nil:
				return
			case res.kind == ok:
				p.resyncDue, backoff = false, p.o.MinBackoff
			case res.kind == failAuth:
				p.pause(ctx, p.o.AuthPause, ErrPushRefused)
				continue
			default:
				p.pause(ctx, backoff, ErrFirewallDown)
				backoff = min(2*backoff, p.o.MaxBackoff)
				continue
			}
		}
		// Answers lost to a full queue are sent with a resync, at most
		// one per OverflowResync: a resync is the whole ledger, and an
		// overloaded target must not spend itself on them.
		var wake <-chan time.Time
		var timer *time.Timer
		if p.lost.Load() {
			timer = time.NewTimer(p.o.OverflowResync - time.Since(p.lastResync))
			wake = timer.C
		}
		batch, tick := p.collect(ctx, refresh, wake)
		if timer != nil {
			timer.Stop()
		}
		if tick {
			p.resyncDue = true
		}
		if len(batch) > 0 {
			p.sendBatch(ctx, batch)
		}
		if p.lost.Load() && time.Since(p.lastResync) >= p.o.OverflowResync {
			p.lost.Store(false)
			p.resyncDue = true
		}
	}
}

// collect waits for a first answer (or a refresh tick, or wake), then gathers
// more until BatchMax entries or BatchWait after the first.
func (p *Pusher) collect(ctx context.Context, refresh, wake <-chan time.Time) (batch []*job, tick bool) {
	select {
	case <-ctx.Done():
		return nil, false
	case <-refresh:
		return nil, true
	case <-wake:
		return nil, false
	case j := <-p.queue:
		p.dequeued(j)
		batch = append(batch, j)
	}
	n := batch[0].size()
	timer := time.NewTimer(p.o.BatchWait)
	defer timer.Stop()
	for n < p.o.BatchMax {
		select {
		case <-ctx.Done():
			return batch, false
		case <-timer.C:
			return batch, false
		case j := <-p.queue:
			p.dequeued(j)
			batch = append(batch, j)
			n += j.size()
		}
	}
	return batch, false
}

func (p *Pusher) entriesOf(batch []*job) []pushEntry {
	type key struct {
		tag  string
		addr netip.Addr
	}
	seen := map[key]int{}
	var out []pushEntry
	for _, j := range batch {
		for _, r := range j.rules {
			tag := p.tag(j.group, r)
			for _, a := range j.addrs {
				k := key{tag, a}
				if i, dup := seen[k]; dup {
					if j.expires.After(out[i].Expires) {
						out[i].Expires = j.expires
					}
					continue
				}
				seen[k] = len(out)
				out = append(out, pushEntry{Tag: tag, Addr: a, Expires: j.expires})
			}
		}
	}
	return out
}

func (p *Pusher) sendBatch(ctx context.Context, batch []*job) {
	entries := p.entriesOf(batch)
	res := p.proto.send(ctx, p.client, entries, p.o.Now())
	p.count(res)
	switch res.kind {
	case ok:
		now := p.o.Now()
		acked := 0
		for _, j := range batch {
			var why []string
			for _, a := range j.addrs {
				if m, bad := res.failed[a]; bad {
					why = append(why, a.String()+": "+m)
				}
			}
			if len(why) > 0 {
				p.finish(j, fmt.Errorf("%w: %s", ErrPushRefused, strings.Join(why, "; ")))
				continue
			}
			acked += j.size()
			p.o.Metrics.lag.WithLabelValues(p.o.Label).Observe(now.Sub(j.at).Seconds())
			p.finish(j, nil)
		}
		p.stats.Acked.Add(uint64(acked))
		p.o.Metrics.entries.WithLabelValues(p.o.Label).Add(float64(acked))
		p.down = false
	case failAuth:
		p.failAll(batch, fmt.Errorf("%w: %s", ErrPushRefused, res.msg))
		p.pause(ctx, p.o.AuthPause, ErrPushRefused)
		p.resyncDue = true
	case failTransient:
		p.failAll(batch, fmt.Errorf("%w: %s", ErrFirewallDown, res.msg))
		p.resyncDue = true
	default:
		p.failAll(batch, fmt.Errorf("%w: %s", ErrPushRefused, res.msg))
	}
}

// count records a result in the stats, metrics and log.
func (p *Pusher) count(res pushResult) {
	l := p.o.Label
	result := "ok"
	if res.kind != ok {
		result = "error"
	}
	p.stats.Batches.Add(1)
	p.o.Metrics.batches.WithLabelValues(l, result).Inc()
	log := p.o.Log.With("target", l, "url", p.o.URL)
	switch res.kind {
	case failTransient:
		p.stats.Transient.Add(1)
		p.o.Metrics.errors.WithLabelValues(l, "network").Inc()
		if !p.down {
			log.Warn("firewall unreachable: pushes stop until it answers, then everything live is sent again", "err", res.msg)
		}
		p.down = true
	case failAuth:
		p.stats.AuthFailures.Add(1)
		p.o.Metrics.errors.WithLabelValues(l, "auth").Inc()
		log.Error("firewall refused the API key; pushes pause", "firewall_says", res.msg, "retry_in", p.o.AuthPause)
	case failHTTP:
		p.stats.HTTPErrors.Add(1)
		p.o.Metrics.errors.WithLabelValues(l, "http").Inc()
		log.Error("firewall refused a push", "firewall_says", res.msg)
	}
	if n := len(res.failed) + len(res.failedNames); n > 0 {
		p.stats.EntryErrors.Add(uint64(n))
		p.o.Metrics.errors.WithLabelValues(l, "entry").Add(float64(n))
		var sample string
		for a, m := range res.failed {
			sample = a.String() + ": " + m
			break
		}
		if sample == "" {
			sample = res.failedNames[0]
		}
		log.Warn("firewall refused entries", "n", n, "firewall_says", sample)
	}
}

func (p *Pusher) finish(j *job, err error) {
	if j.done != nil {
		j.done <- err
	}
}

func (p *Pusher) failAll(batch []*job, err error) {
	for _, j := range batch {
		p.finish(j, err)
	}
}

// pause waits d, failing the answers that arrive meanwhile at once:
// those that hold get err rather than wait out their budget, the others
// are in the ledger and go with the resync that follows.
func (p *Pusher) pause(ctx context.Context, d time.Duration, err error) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case j := <-p.queue:
			p.dequeued(j)
			p.finish(j, err)
		}
	}
}

// drain fails what is left at shutdown.
func (p *Pusher) drain(err error) {
	for {
		select {
		case j := <-p.queue:
			p.dequeued(j)
			p.finish(j, fmt.Errorf("feeds: shutting down: %w", err))
		default:
			return
		}
	}
}

// resync sends everything live, with what is left of each lifetime.
func (p *Pusher) resync(ctx context.Context) pushResult {
	now := p.o.Now()
	live, names := p.live(now)
	res := p.proto.resync(ctx, p.client, live, names, now)
	p.count(res)
	if res.kind == ok {
		p.lastResync = time.Now()
		p.stats.Resyncs.Add(1)
		n := len(live) - len(res.failed)
		p.stats.Acked.Add(uint64(n))
		p.o.Metrics.entries.WithLabelValues(p.o.Label).Add(float64(n))
		if p.down {
			p.o.Log.Info("firewall answers again: everything live sent", "target", p.o.Label, "entries", len(live))
		}
		p.down = false
	}
	return res
}

// live is every live entry of every group, one per tag and address with
// the latest expiry, and every tag the policy has.
func (p *Pusher) live(now time.Time) ([]pushEntry, []string) {
	pol := p.o.Policy()
	if pol == nil {
		return nil, nil
	}
	type key struct {
		tag  string
		addr netip.Addr
	}
	at := map[key]int{}
	var out []pushEntry
	var names []string
	for _, g := range pol.Groups() {
		for _, r := range g.Rules {
			names = append(names, p.tag(g.Name, r.Name))
		}
		p.o.Ledger.WalkLive(now, g.Name, func(a ledger.LiveAddr) {
			for _, r := range a.Rules {
				k := key{p.tag(g.Name, r), a.Addr}
				if i, dup := at[k]; dup {
					if a.Expires.After(out[i].Expires) {
						out[i].Expires = a.Expires
					}
					continue
				}
				at[k] = len(out)
				out = append(out, pushEntry{Tag: k.tag, Addr: a.Addr, Expires: a.Expires})
			}
		})
	}
	return out, names
}
