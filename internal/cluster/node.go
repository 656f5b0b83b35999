package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config is a node's place in its site.
type Config struct {
	Site, Node string
	// Embedded runs a JetStream server in the process, at Listen, and
	// reads the peers' streams from their servers at Routes. Otherwise
	// URLs are an existing NATS system all nodes share.
	Embedded bool
	Listen   netip.AddrPort
	Routes   []string
	URLs     []string
	// Token is the shared secret of the site's NATS connections.
	Token string
	// StoreDir keeps the node's stream on disk (embedded); empty keeps it
	// in memory.
	StoreDir string
	// MaxLife is the longest lifetime a node grants an answer:
	// max(max_ttl, min_ttl) + grace. A record that lives longer is refused.
	MaxLife time.Duration
	// MaxEntries bounds the node's stream, as it bounds the ledger.
	MaxEntries int
	// CatchupTimeout is how long a starting node waits for a peer it
	// cannot reach before it reports ready without it.
	CatchupTimeout time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Verdict is what became of a record another node sent.
type Verdict uint8

const (
	// Applied: in this node's kernel and ledger.
	Applied Verdict = iota
	// Denied: this node's policy does not grant it (another client
	// group, another rule, a name it denies).
	Denied
	// Failed: the kernel did not take it.
	Failed
)

// Applier installs records. Apply is called from one goroutine with a
// batch and returns a verdict per record.
type Applier interface {
	Apply(ctx context.Context, recs []Record) []Verdict
}

// Bounds of the queues between the query path, NATS and the kernel.
const (
	publishQueue = 16384
	applyQueue   = 4096
	batchMax     = 512
	// clockSkew is how far in the future a record's expiry may lie beyond
	// MaxLife: the nodes' clocks are NTP-synced, not equal.
	clockSkew = 5 * time.Second
	// maxStreams bounds the other nodes' streams a node follows.
	maxStreams = 64
	// publishLinger is how long the publisher waits for more records
	// before it sends what it has: a share of the replication lag.
	publishLinger = 10 * time.Millisecond
	// discoverEvery is how often a node looks for new nodes' streams.
	discoverEvery = 2 * time.Second
)

// Node is one node of a site: it publishes this node's answers and
// applies the others'.
type Node struct {
	cfg Config
	log *slog.Logger
	app Applier
	m   *metrics
	now func() time.Time

	emb   *embedded
	local *nats.Conn
	js    jetstream.JetStream

	pub   chan Record
	apply chan item

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// closing asks the publisher to send what is queued and stop;
	// pubDone is closed when it has.
	closing, pubDone chan struct{}
	closeOnce        sync.Once

	started time.Time
	own     *follower // this node's stream, read back once at start
	mu      sync.Mutex
	sources []*source
	ready   atomic.Bool
}

// item is a record on its way to the applier, with the follower that read
// it (for catch-up accounting).
type item struct {
	rec Record
	f   *follower
}

// Start joins the site. It returns once this node can publish (embedded)
// or is trying to reach the shared NATS system (URLs); catch-up goes on
// behind and Ready reports it.
func Start(ctx context.Context, c Config, app Applier, log *slog.Logger) (*Node, error) {
	if !ValidToken(c.Site) || !ValidToken(c.Node) {
		return nil, fmt.Errorf("cluster: site %q and node %q must be names of letters, digits, '-' and '_'", c.Site, c.Node)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.CatchupTimeout <= 0 {
		c.CatchupTimeout = 10 * time.Second
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = 100000
	}
	n := &Node{cfg: c, log: log.With("part", "cluster", "node", c.Node), app: app, m: newMetrics(), now: c.Now,
		pub: make(chan Record, publishQueue), apply: make(chan item, applyQueue),
		closing: make(chan struct{}), pubDone: make(chan struct{})}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.started = n.now()
	fail := func(err error) (*Node, error) {
		n.cancel()
		n.closeConns()
		return nil, err
	}
	var err error
	if c.Embedded {
		if n.emb, err = startEmbedded(c, n.log); err != nil {
			return fail(err)
		}
		n.local, err = nats.Connect("", nats.InProcessServer(n.emb.srv), nats.UserInfo(localUser, n.emb.localPass),
			nats.CustomInboxPrefix(localInbox),
			nats.Name("fqdngate "+c.Node+" local"), nats.MaxReconnects(-1))
	} else {
		n.local, err = nats.Connect(strings.Join(c.URLs, ","), n.connOpts("fqdngate "+c.Node)...)
	}
	if err != nil {
		return fail(fmt.Errorf("cluster: connect: %w", err))
	}
	if n.js, err = jetstream.New(n.local, jetstream.WithPublishAsyncMaxPending(4096),
		// An ack that never comes (lost in a leader election of a
		// replicated stream) must not hold its slot for good.
		jetstream.WithPublishAsyncTimeout(publishAckWait)); err != nil {
		return fail(fmt.Errorf("cluster: %w", err))
	}
	if c.Embedded {
		// The node's own server: its stream can always be written.
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := n.ensureStream(sctx); err != nil {
			return fail(err)
		}
		for _, r := range c.Routes {
			if n.isSelf(r) {
				continue
			}
			nc, err := nats.Connect(r, append(n.connOpts("fqdngate "+c.Node+" from "+r), nats.UserInfo(peerUser, c.Token))...)
			if err != nil {
				return fail(fmt.Errorf("cluster: route %s: %w", r, err))
			}
			n.addSource(r, nc, false)
		}
	} else {
		n.addSource(strings.Join(c.URLs, ","), n.local, true)
	}
	n.own = &follower{n: n, stream: StreamName(c.Site, c.Node), node: c.Node, self: true}
	n.wg.Add(2)
	go n.publishLoop()
	go n.applyLoop()
	go n.readOwn()
	for _, s := range n.sources {
		n.wg.Add(1)
		go s.run()
	}
	return n, nil
}

// connOpts are those of every connection to a NATS server on the network:
// it keeps trying, forever, and buffers little while it is away (what it
// would buffer is counted as dropped instead).
func (n *Node) connOpts(name string) []nats.Option {
	o := []nats.Option{nats.Name(name), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond), nats.ReconnectJitter(100*time.Millisecond, 100*time.Millisecond),
		nats.ReconnectBufSize(1 << 20), nats.PingInterval(2 * time.Second), nats.MaxPingsOutstanding(2),
		nats.Timeout(2 * time.Second),
		// A peer with another token is an operator's mistake being fixed:
		// keep trying, and say so in the log.
		nats.IgnoreAuthErrorAbort(),
		nats.DisconnectErrHandler(func(c *nats.Conn, err error) {
			n.log.Warn("nats connection lost", "server", c.ConnectedUrlRedacted(), "err", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { n.log.Info("nats connection back", "server", c.ConnectedUrlRedacted()) }),
	}
	if !n.cfg.Embedded && n.cfg.Token != "" {
		o = append(o, nats.Token(n.cfg.Token))
	}
	return o
}

// isSelf: a route to this node's own listen address is skipped (every
// node may carry the same list).
func (n *Node) isSelf(route string) bool {
	ap, err := routeAddr(route)
	return err == nil && ap == n.cfg.Listen
}

func routeAddr(route string) (netip.AddrPort, error) {
	hp := strings.TrimPrefix(strings.TrimPrefix(route, "nats://"), "tls://")
	if i := strings.LastIndex(hp, "@"); i >= 0 {
		hp = hp[i+1:]
	}
	return netip.ParseAddrPort(hp)
}

// The stream holds the batches of the last MaxLife, each until its
// longest record expired (a per-message TTL), within a bound in bytes:
// past it the oldest batches go first, and they hold the entries closest
// to their end. The bound is a quarter more than the ledger's entries at
// msgBytes each (a record is about 200 bytes of JSON), which leaves room
// for the refreshes freshness lets through.
const msgBytes = 512

func streamBytes(maxEntries int) int64 { return int64(maxEntries+maxEntries/4) * msgBytes }

func (n *Node) ensureStream(ctx context.Context) error {
	cfg := jetstream.StreamConfig{
		Name:        StreamName(n.cfg.Site, n.cfg.Node),
		Description: "fqdngate answers of node " + n.cfg.Node + " of site " + n.cfg.Site,
		Subjects:    []string{AnswersSubject(n.cfg.Site, n.cfg.Node)},
		Storage:     jetstream.MemoryStorage,
		Replicas:    1,
		MaxAge:      n.cfg.MaxLife + clockSkew,
		MaxMsgs:     -1,
		MaxBytes:    streamBytes(n.cfg.MaxEntries),
		Discard:     jetstream.DiscardOld,
		AllowMsgTTL: true,
		DenyDelete:  true,
		DenyPurge:   true,
	}
	if n.cfg.StoreDir != "" || !n.cfg.Embedded {
		cfg.Storage = jetstream.FileStorage
	}
	if n.cfg.Embedded {
		if _, err := n.js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("cluster: stream %s: %w", cfg.Name, err)
		}
		return nil
	}
	// A shared system's stream may have been tuned by its operators
	// (replicas, placement): it is created when missing, never changed.
	if _, err := n.js.Stream(ctx, cfg.Name); err == nil {
		return nil
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("cluster: stream %s: %w", cfg.Name, err)
	}
	if _, err := n.js.CreateStream(ctx, cfg); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("cluster: stream %s: %w", cfg.Name, err)
	}
	return nil
}

// Publish hands this node's records to the publisher. It never blocks: a
// full queue drops them and counts it (the answers are served; a peer
// that took over would not have them).
func (n *Node) Publish(recs ...Record) {
	for _, r := range recs {
		select {
		case n.pub <- r:
		default:
			n.m.publishDropped.WithLabelValues("queue-full").Inc()
		}
	}
}

// PublishDrop sends an explained drop on the node's drops subject (core
// NATS, not kept), for a fleet's view of what was blocked.
func (n *Node) PublishDrop(body []byte) {
	if err := n.local.Publish(DropsSubject(n.cfg.Site, n.cfg.Node), body); err != nil {
		n.m.dropsDropped.Inc()
		return
	}
	n.m.dropsPublished.Inc()
}

func (n *Node) publishLoop() {
	defer close(n.pubDone)
	batch := make([]Record, 0, batchMax)
	streamOK := n.cfg.Embedded
	fresh := &freshness{max: n.cfg.MaxEntries, last: make(map[freshKey]int64)}
	var load rate
	for {
		batch = batch[:0]
		closing := false
		select {
		case <-n.ctx.Done():
			return
		case <-n.closing:
			// The last answers are sent before the node leaves.
			closing = true
		case r := <-n.pub:
			batch = append(batch, r)
		}
	drain:
		for len(batch) < batchMax {
			select {
			case r := <-n.pub:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		if closing {
			if len(batch) == 0 {
				return
			}
		} else if load.busy(n.now(), len(batch)) && !n.linger(&batch) {
			return
		}
		if !streamOK {
			ctx, cancel := context.WithTimeout(n.ctx, 2*time.Second)
			err := n.ensureStream(ctx)
			cancel()
			if err != nil {
				n.m.publishDropped.WithLabelValues("unreachable").Add(float64(len(batch)))
				n.log.Debug("answers not published: nats unreachable", "n", len(batch), "err", err)
				continue
			}
			streamOK = true
		}
		n.publishBatch(batch, fresh)
	}
}

// rate tells a busy node from a quiet one by the records it published in
// the last window. Under load, lingering a moment fills the batch: a
// message costs the embedded server and every peer's consumer about as
// much as an answer costs, whatever it carries. A quiet node publishes
// each answer at once, so that the peers have it within a millisecond.
type rate struct {
	start      time.Time
	now, prior int
}

// Load above busyRate records a second (in windows of rateWindow) is busy.
const (
	rateWindow = 100 * time.Millisecond
	busyRate   = 1000
)

func (r *rate) busy(now time.Time, n int) bool {
	if d := now.Sub(r.start); d >= rateWindow {
		r.prior = r.now
		if d >= 2*rateWindow {
			r.prior = 0 // the window before this one was silent
		}
		r.now, r.start = 0, now
	}
	r.now += n
	per := int(busyRate * rateWindow / time.Second)
	return r.prior >= per || r.now >= per
}

// linger waits publishLinger, then adds to batch what was queued
// meanwhile, up to batchMax; false when the node is closing. It sleeps
// rather than receive, so that the answers queued meanwhile do not each
// wake the publisher.
func (n *Node) linger(batch *[]Record) bool {
	t := time.NewTimer(publishLinger)
	defer t.Stop()
	select {
	case <-t.C:
	case <-n.closing:
	case <-n.ctx.Done():
		return false
	}
	for len(*batch) < batchMax {
		select {
		case r := <-n.pub:
			*batch = append(*batch, r)
		default:
			return true
		}
	}
	return true
}

// publishBatch sends a batch as few messages as fit, and waits for the
// server's acks, so that what is counted published is stored. A record
// that only refreshes one published a moment ago is left out (fresh).
func (n *Node) publishBatch(batch []Record, fresh *freshness) {
	now := n.now()
	keep := batch[:0]
	for _, r := range batch {
		if r.Expires.Sub(now) < time.Second {
			continue // about to expire: no peer needs it
		}
		if !fresh.worthPublishing(r) {
			n.m.publishSkipped.Inc()
			continue
		}
		keep = append(keep, r)
	}
	type pending struct {
		f     jetstream.PubAckFuture
		chunk []Record
	}
	var futs []pending
	for len(keep) > 0 {
		chunk := keep[:chunkLen(keep)]
		keep = keep[len(chunk):]
		body, err := Encode(n.cfg.Node, chunk)
		if err != nil {
			n.m.publishDropped.WithLabelValues("error").Add(float64(len(chunk)))
			fresh.unpublished(chunk)
			continue
		}
		var longest time.Time
		for _, r := range chunk {
			if r.Expires.After(longest) {
				longest = r.Expires
			}
		}
		// The stream forgets the message once its longest record expired.
		ttl := longest.Sub(now).Round(time.Second) + clockSkew
		msg := &nats.Msg{Subject: AnswersSubject(n.cfg.Site, n.cfg.Node), Data: body}
		f, err := n.js.PublishMsgAsync(msg, jetstream.WithMsgTTL(ttl))
		if err != nil {
			n.m.publishDropped.WithLabelValues("error").Add(float64(len(chunk)))
			fresh.unpublished(chunk)
			continue
		}
		futs = append(futs, pending{f, chunk})
	}
	// One deadline for all the acks: once it has passed, every ack not in
	// yet counts as timed out. A record not stored is not remembered as
	// published, so the next answer for it is published again.
	timeout := time.NewTimer(publishAckWait)
	defer timeout.Stop()
	stored := func(p pending) {
		n.m.published.Add(float64(len(p.chunk)))
		n.m.messages.Inc()
	}
	lost := func(p pending, why string) {
		n.m.publishDropped.WithLabelValues(why).Add(float64(len(p.chunk)))
		fresh.unpublished(p.chunk)
	}
	expired := false
	for _, p := range futs {
		if !expired {
			select {
			case <-p.f.Ok():
				stored(p)
				continue
			case <-p.f.Err():
				lost(p, "error")
				continue
			case <-timeout.C:
				expired = true
			case <-n.ctx.Done():
				return
			}
		}
		select {
		case <-p.f.Ok():
			stored(p)
		default:
			lost(p, "timeout")
		}
	}
}

// publishAckWait bounds the wait for the server's acks of one batch;
// closeWait the publication of what is queued when the node closes.
const (
	publishAckWait = 5 * time.Second
	closeWait      = 2 * time.Second
)

// chunkBytes bounds a message's body well below maxMessageBytes (a record
// is at most about 4.5 KiB: a 253-byte name and a chain of 16).
const chunkBytes = 192 << 10

// chunkLen is how many of recs go in the next message.
func chunkLen(recs []Record) int {
	size := 0
	for i, r := range recs {
		size += 160 + len(r.Name) + len(r.Group)
		for _, c := range r.Chain {
			size += 3 + len(c)
		}
		if i == batchMax || size > chunkBytes {
			return max(i, 1)
		}
	}
	return len(recs)
}

// freshness remembers the expiry each entry was last published with, so
// that an answer that does not extend it (a cached answer served again
// without min_ttl: the same expiry) is not published again. A refresh
// that extends it, by however little, is: the other nodes must hold every
// element as long as this node does (a slack here would let a peer's
// element end before this node's, and a device's connection after a
// failover with it). Only the publisher's goroutine uses it; it is
// cleared when it reaches its bound, which costs one more publication of
// each entry.
type freshness struct {
	max  int
	last map[freshKey]int64 // expiry published, Unix ms
}

type freshKey struct {
	client, addr netip.Addr
	name         string
}

func (f *freshness) worthPublishing(r Record) bool {
	k := freshKey{r.Client, r.Addr, r.Name}
	exp := r.Expires.UnixMilli()
	if last, ok := f.last[k]; ok && exp <= last {
		return false
	}
	if len(f.last) >= f.max {
		clear(f.last)
	}
	f.last[k] = exp
	return true
}

// unpublished forgets what recs were remembered as published with: they
// were not stored.
func (f *freshness) unpublished(recs []Record) {
	for _, r := range recs {
		k := freshKey{r.Client, r.Addr, r.Name}
		if f.last[k] == r.Expires.UnixMilli() {
			delete(f.last, k)
		}
	}
}

// applyLoop judges what the followers read and hands it, in batches, to
// the Applier.
func (n *Node) applyLoop() {
	defer n.wg.Done()
	items := make([]item, 0, batchMax)
	recs := make([]Record, 0, batchMax)
	for {
		items, recs = items[:0], recs[:0]
		select {
		case <-n.ctx.Done():
			return
		case it := <-n.apply:
			items = append(items, it)
		}
	fill:
		for len(items) < batchMax {
			select {
			case it := <-n.apply:
				items = append(items, it)
			default:
				break fill
			}
		}
		now := n.now()
		kept := items[:0]
		for _, it := range items {
			switch r := it.rec; {
			case r.Node != it.f.node:
				n.m.refused.WithLabelValues("wrong-node").Inc()
			case !r.Expires.After(now):
				n.m.refused.WithLabelValues("expired").Inc()
			case r.Expires.After(now.Add(n.cfg.MaxLife + clockSkew)):
				n.m.refused.WithLabelValues("future").Inc()
			default:
				kept = append(kept, it)
				recs = append(recs, r)
				continue
			}
			it.f.done(1)
		}
		if len(recs) == 0 {
			continue
		}
		verdicts := n.app.Apply(n.ctx, recs)
		done := n.now()
		for i, it := range kept {
			v := Failed
			if i < len(verdicts) {
				v = verdicts[i]
			}
			switch v {
			case Applied:
				n.m.applied.Inc()
				if it.f.live() {
					n.m.lag.Observe(max(0, done.Sub(it.rec.Learnt).Seconds()))
				}
			case Denied:
				n.m.refused.WithLabelValues("policy").Inc()
			default:
				n.m.refused.WithLabelValues("kernel").Inc()
			}
			it.f.done(1)
		}
	}
}

// Ready reports whether the node has caught up: it read back its own
// stream and every peer's, or gave up on the peers it could not reach
// within CatchupTimeout. Once ready it stays ready: a partition later
// must not take the VIP from the node that serves.
func (n *Node) Ready() (bool, string) {
	if n.ready.Load() {
		return true, ""
	}
	waitOver := n.now().Sub(n.started) >= n.cfg.CatchupTimeout
	if !n.own.caughtUp() && (!waitOver || n.local.IsConnected()) {
		return false, "cluster: reading back this node's own stream"
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, s := range n.sources {
		if ok, why := s.caughtUp(); !ok {
			if waitOver && !s.conn.IsConnected() {
				continue // unreachable: serve alone
			}
			return false, "cluster: catching up from " + s.name + ": " + why
		}
	}
	n.ready.Store(true)
	n.m.caughtUp.Set(1)
	n.log.Info("caught up", "peers", len(n.sources))
	return true, ""
}

// Close leaves the site: the answers queued are published (within
// closeWait), publishing stops, and the embedded server, if any, shuts
// down. A peer has what it read by then; a planned stop of a node that
// peers read from at once loses nothing.
func (n *Node) Close() { n.closeOnce.Do(n.close) }

func (n *Node) close() {
	close(n.closing)
	select {
	case <-n.pubDone:
	case <-time.After(closeWait):
	}
	n.cancel()
	<-n.pubDone
	n.mu.Lock()
	for _, s := range n.sources {
		s.stop()
	}
	n.mu.Unlock()
	n.wg.Wait()
	n.closeConns()
}

func (n *Node) closeConns() {
	n.mu.Lock()
	for _, s := range n.sources {
		if !s.shared {
			s.conn.Close()
		}
	}
	n.mu.Unlock()
	if n.local != nil {
		n.local.Close()
	}
	if n.emb != nil {
		n.emb.close()
	}
}
