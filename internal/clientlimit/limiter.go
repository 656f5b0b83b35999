package clientlimit

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Bounds of the tracking; named so that the README can state them.
const (
	// MaxClients is how many clients are tracked at once, all groups
	// together: 165 bytes each (the map slot, the client, its bucket;
	// measured at the cap), some 11 MiB in all.
	MaxClients = 65536
	// IdleAfter is how long a client with nothing in flight is kept after
	// its last query. Its bucket refills within BurstSeconds, so one that
	// is forgotten and seen again starts where it would have been.
	IdleAfter = time.Minute
	// BurstSeconds is the bucket's depth in seconds of max_qps: a client
	// may send one second's worth at once after a quiet second.
	BurstSeconds = 1
)

// shards split the table so that clients do not all wait on one lock;
// each holds MaxClients/shards clients.
const shards = 16

// sweepEvery bounds how often a full shard is searched for idle clients
// when a new one arrives: a shard full of active clients is not walked on
// every query.
const sweepEvery = time.Second

// Limit names what refused a query, the label of the rate-limited counter.
type Limit string

// What Admit can refuse on; "" admits.
const (
	LimitQPS      Limit = "qps"
	LimitInflight Limit = "inflight"
)

// Limits are one client group's; a zero field is no limit.
type Limits struct {
	// QPS is the queries a second one client may send (max_qps).
	QPS int
	// Inflight is the queries of one client worked on at once
	// (max_inflight).
	Inflight int
}

func (l Limits) none() bool { return l.QPS <= 0 && l.Inflight <= 0 }

// Ticket is an admitted query's hold on its client's in-flight count;
// nil when nothing is held. Give it back with Done.
type Ticket = *client

// client is one tracked client, or a group's overflow bucket.
type client struct {
	g *group
	// bucket is nil without a QPS limit; it locks itself.
	bucket   *rate.Limiter
	inflight atomic.Int32
	// last is when the client last asked, in Unix nanoseconds; guarded
	// by its shard's lock (the overflow bucket's is never read).
	last int64
}

// group is one client group's limits and counters.
type group struct {
	limits   Limits
	overflow *client
	refused  *refused
}

// refused counts a group's refused queries by LimitQPS, LimitInflight;
// kept across reloads.
type refused [2]atomic.Uint64

type groups map[string]*group

// shard is a part of the table of clients, by the hash of the address.
type shard struct {
	mu        sync.Mutex
	clients   map[[16]byte]*client
	lastSweep int64
}

// Limiter admits queries per client. It is safe for concurrent use.
type Limiter struct {
	groups atomic.Pointer[groups]
	// mu guards counts, every group name ever configured (reloads only
	// add the few a configuration has).
	mu       sync.Mutex
	counts   map[string]*refused
	seed     maphash.Seed
	perShard int
	shards   [shards]shard
}

// New returns a Limiter of the groups' limits, by group name. A group not
// in the map, or with zero limits, is not limited.
func New(limits map[string]Limits) *Limiter {
	return newLimiter(limits, MaxClients)
}

func newLimiter(limits map[string]Limits, maxClients int) *Limiter {
	l := &Limiter{seed: maphash.MakeSeed(), perShard: max(maxClients/shards, 1), counts: make(map[string]*refused)}
	for i := range l.shards {
		l.shards[i].clients = make(map[[16]byte]*client)
	}
	l.SetLimits(limits)
	return l
}

// SetLimits replaces the groups' limits (a reload). Tracked clients get
// the new limits, and full buckets, at their next query; queries in
// flight still count against the bucket they were admitted by.
func (l *Limiter) SetLimits(limits map[string]Limits) {
	l.mu.Lock()
	defer l.mu.Unlock()
	gs := make(groups, len(limits))
	for name, lim := range limits {
		if lim.none() {
			continue
		}
		if l.counts[name] == nil {
			l.counts[name] = new(refused)
		}
		g := &group{limits: lim, refused: l.counts[name]}
		g.overflow = newClient(g)
		gs[name] = g
	}
	l.groups.Store(&gs)
}

func newClient(g *group) *client {
	c := &client{g: g}
	if q := g.limits.QPS; q > 0 {
		c.bucket = rate.NewLimiter(rate.Limit(q), q*BurstSeconds)
	}
	return c
}

// Admit decides on one query of client, of group, at now. Admitted ("")
// it returns the ticket to give back with Done when the query is
// answered; refused, the limit it is over.
func (l *Limiter) Admit(now time.Time, client netip.Addr, group string) (Ticket, Limit) {
	g := (*l.groups.Load())[group]
	if g == nil {
		return nil, ""
	}
	c := l.lookup(now, client, g)
	if max := g.limits.Inflight; max > 0 {
		if c.inflight.Add(1) > int32(max) {
			c.inflight.Add(-1)
			g.refused[1].Add(1)
			return nil, LimitInflight
		}
	}
	if c.bucket != nil && !c.bucket.AllowN(now, 1) {
		if g.limits.Inflight > 0 {
			c.inflight.Add(-1)
		}
		g.refused[0].Add(1)
		return nil, LimitQPS
	}
	if g.limits.Inflight <= 0 {
		return nil, ""
	}
	return c, ""
}

// Done gives back an admitted query's ticket.
func (l *Limiter) Done(t Ticket) {
	if t != nil {
		t.inflight.Add(-1)
	}
}

// lookup is client's entry, made if need be; the group's overflow bucket
// when its shard is full of active clients.
func (l *Limiter) lookup(now time.Time, addr netip.Addr, g *group) *client {
	key := addr.As16()
	sh := &l.shards[maphash.Comparable(l.seed, key)%shards]
	ns := now.UnixNano()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if c, ok := sh.clients[key]; ok {
		if c.g != g {
			// Another group, or new limits since a reload.
			c = newClient(g)
			sh.clients[key] = c
		}
		c.last = ns
		return c
	}
	if len(sh.clients) >= l.perShard || ns-sh.lastSweep >= int64(IdleAfter) {
		// Full, at most once per sweepEvery; otherwise once per IdleAfter,
		// so that a burst of clients leaves no memory behind.
		if len(sh.clients) < l.perShard || ns-sh.lastSweep >= int64(sweepEvery) {
			sh.sweep(ns)
		}
		if len(sh.clients) >= l.perShard {
			return g.overflow
		}
	}
	c := newClient(g)
	c.last = ns
	sh.clients[key] = c
	return c
}

// sweep forgets the shard's idle clients; the lock is held.
func (sh *shard) sweep(now int64) {
	sh.lastSweep = now
	for k, c := range sh.clients {
		if c.inflight.Load() == 0 && now-c.last >= int64(IdleAfter) {
			delete(sh.clients, k)
		}
	}
}

// Tracked is how many clients are tracked now.
func (l *Limiter) Tracked() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.clients)
		sh.mu.Unlock()
	}
	return n
}

// Refused is the queries refused so far, by group and limit.
func (l *Limiter) Refused() map[string]map[Limit]uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]map[Limit]uint64, len(l.counts))
	for name, r := range l.counts {
		out[name] = map[Limit]uint64{LimitQPS: r[0].Load(), LimitInflight: r[1].Load()}
	}
	return out
}
