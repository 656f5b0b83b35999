package ledger

import (
	"container/heap"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/fqdngate/fqdngate/internal/policy"
)

// Elem is one kernel set element: client . address . protocol . port(s).
// Client is the zero Addr in global scope.
type Elem struct {
	Client netip.Addr
	Addr   netip.Addr
	Port   policy.PortRange
}

// Answer is what one DNS answer taught a client.
type Answer struct {
	Client netip.Addr
	Group  string
	// Name is the queried name, normalised.
	Name string
	// Chain is the CNAME targets from Name to the addresses, in order.
	Chain []string
	Addrs []netip.Addr
	Rules []string
	Ports []policy.PortRange
	// TTL is the lowest TTL on the chain, after clamping.
	TTL time.Duration
	// Expires is when the addresses stop being allowed:
	// now + max(TTL, min_ttl) + grace.
	Expires time.Time
}

// Entry is one address told to one client for one name.
type Entry struct {
	Client  netip.Addr
	Group   string
	Name    string
	Chain   []string
	Addr    netip.Addr
	Rules   []string
	Ports   []policy.PortRange
	TTL     time.Duration
	Learnt  time.Time
	Expires time.Time

	index int // position in the expiry heap
}

// Live reports whether the entry still allows traffic at now.
func (e *Entry) Live(now time.Time) bool { return now.Before(e.Expires) }

type entryKey struct {
	client, addr netip.Addr
	name         string
}

type nameKey struct {
	client netip.Addr
	name   string
}

// Options bound a Ledger.
type Options struct {
	// MaxPerName caps the addresses kept per client and name.
	MaxPerName int
	// MaxEntries caps all entries, expired ones included.
	MaxEntries int
	// Retention is how long an expired entry is kept for explanations.
	Retention time.Duration
	// Global drops the client from kernel elements (scope global).
	Global bool
}

// DefaultRetention keeps expired entries long enough to explain the drops
// of a device that reconnects after an hour of sleep.
const DefaultRetention = time.Hour

// Ledger is safe for concurrent use; one mutex guards all of it, held only
// for map and heap updates.
type Ledger struct {
	opts Options

	mu      sync.Mutex
	entries map[entryKey]*Entry
	byName  map[nameKey][]*Entry
	byAddr  map[netip.Addr][]*Entry
	expiry  expiryHeap
	stats   Stats
}

// Stats counts what the ledger did since it was made.
type Stats struct {
	Entries        int
	Learnt         uint64
	EvictedPerName uint64
	EvictedGlobal  uint64
	Collected      uint64
}

// New returns an empty ledger. Zero options take safe defaults.
func New(o Options) *Ledger {
	if o.MaxPerName <= 0 {
		o.MaxPerName = 256
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 262144
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	return &Ledger{
		opts:    o,
		entries: make(map[entryKey]*Entry),
		byName:  make(map[nameKey][]*Entry),
		byAddr:  make(map[netip.Addr][]*Entry),
	}
}

// ElemsOf returns the kernel elements an answer needs, each to live until
// the answer's expiry.
func (l *Ledger) ElemsOf(a Answer) []Elem {
	client := a.Client
	if l.opts.Global {
		client = netip.Addr{}
	}
	out := make([]Elem, 0, len(a.Addrs)*len(a.Ports))
	for _, addr := range a.Addrs {
		for _, p := range a.Ports {
			out = append(out, Elem{Client: client, Addr: addr, Port: p})
		}
	}
	return out
}

// Record stores an answer that the kernel has accepted. It returns the
// elements of evicted live entries that no remaining live entry covers;
// the caller removes them from the kernel. Established flows survive
// that: conntrack keeps them.
func (l *Ledger) Record(now time.Time, a Answer) (revoke []Elem) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, addr := range a.Addrs {
		k := entryKey{a.Client, addr, a.Name}
		if e := l.entries[k]; e != nil {
			e.Chain, e.Rules, e.Ports, e.TTL, e.Group, e.Learnt = a.Chain, a.Rules, a.Ports, a.TTL, a.Group, now
			if a.Expires.After(e.Expires) {
				e.Expires = a.Expires
				heap.Fix(&l.expiry, e.index)
			}
			continue
		}
		nk := nameKey{a.Client, a.Name}
		if same := l.byName[nk]; len(same) >= l.opts.MaxPerName {
			oldest := slices.MinFunc(same, func(x, y *Entry) int { return x.Expires.Compare(y.Expires) })
			revoke = append(revoke, l.removeLocked(now, oldest)...)
			l.stats.EvictedPerName++
		}
		if len(l.entries) >= l.opts.MaxEntries {
			revoke = append(revoke, l.removeLocked(now, l.expiry[0])...)
			l.stats.EvictedGlobal++
		}
		e := &Entry{
			Client: a.Client, Group: a.Group, Name: a.Name, Chain: a.Chain, Addr: addr,
			Rules: a.Rules, Ports: a.Ports, TTL: a.TTL, Learnt: now, Expires: a.Expires,
		}
		l.entries[k] = e
		l.byName[nk] = append(l.byName[nk], e)
		l.byAddr[addr] = append(l.byAddr[addr], e)
		heap.Push(&l.expiry, e)
		l.stats.Learnt++
	}
	return revoke
}

// removeLocked deletes e and returns its kernel elements that no other
// live entry covers (none when e itself had expired: the kernel aged those
// out on its own).
func (l *Ledger) removeLocked(now time.Time, e *Entry) []Elem {
	delete(l.entries, entryKey{e.Client, e.Addr, e.Name})
	nk := nameKey{e.Client, e.Name}
	l.byName[nk] = removePtr(l.byName[nk], e)
	if len(l.byName[nk]) == 0 {
		delete(l.byName, nk)
	}
	l.byAddr[e.Addr] = removePtr(l.byAddr[e.Addr], e)
	others := l.byAddr[e.Addr]
	if len(others) == 0 {
		delete(l.byAddr, e.Addr)
	}
	heap.Remove(&l.expiry, e.index)
	if !e.Live(now) {
		return nil
	}
	var out []Elem
	for _, p := range e.Ports {
		covered := false
		for _, o := range others {
			if o.Live(now) && (l.opts.Global || o.Client == e.Client) && slices.Contains(o.Ports, p) {
				covered = true
				break
			}
		}
		if !covered {
			client := e.Client
			if l.opts.Global {
				client = netip.Addr{}
			}
			out = append(out, Elem{Client: client, Addr: e.Addr, Port: p})
		}
	}
	return out
}

func removePtr(s []*Entry, e *Entry) []*Entry {
	for i, x := range s {
		if x == e {
			s[i] = s[len(s)-1]
			s[len(s)-1] = nil
			return s[:len(s)-1]
		}
	}
	return s
}

// GC removes entries that expired more than the retention period before
// now, and returns how many it removed.
func (l *Ledger) GC(now time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	cutoff := now.Add(-l.opts.Retention)
	n := 0
	for len(l.expiry) > 0 && !l.expiry[0].Expires.After(cutoff) {
		l.removeLocked(now, l.expiry[0])
		n++
	}
	l.stats.Collected += uint64(n)
	return n
}

// Lookup returns copies of the entries for addr, live and expired, newest
// expiry first. An invalid client matches every client.
func (l *Ledger) Lookup(addr netip.Addr, client netip.Addr) []Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Entry
	for _, e := range l.byAddr[addr.Unmap()] {
		if client.IsValid() && e.Client != client {
			continue
		}
		out = append(out, *e)
	}
	slices.SortFunc(out, func(x, y Entry) int { return y.Expires.Compare(x.Expires) })
	return out
}

// Stats returns the counters.
func (l *Ledger) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats
	s.Entries = len(l.entries)
	return s
}

// expiryHeap orders entries by expiry, earliest first.
type expiryHeap []*Entry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].Expires.Before(h[j].Expires) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *expiryHeap) Push(x any) {
	e := x.(*Entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}

// Filter selects ledger entries; zero fields match everything.
type Filter struct {
	Client, Addr netip.Addr
	// Name is normalised (lower case, no trailing dot).
	Name string
}

// Select returns copies of up to limit entries matching f, newest expiry
// first, and whether more matched.
func (l *Ledger) Select(f Filter, limit int) ([]Entry, bool) {
	l.mu.Lock()
	var out []Entry
	add := func(e *Entry) {
		if (f.Client.IsValid() && e.Client != f.Client) || (f.Addr.IsValid() && e.Addr != f.Addr.Unmap()) || (f.Name != "" && e.Name != f.Name) {
			return
		}
		out = append(out, *e)
	}
	switch {
	case f.Addr.IsValid():
		for _, e := range l.byAddr[f.Addr.Unmap()] {
			add(e)
		}
	case f.Client.IsValid() && f.Name != "":
		for _, e := range l.byName[nameKey{f.Client, f.Name}] {
			add(e)
		}
	default:
		for _, e := range l.entries {
			add(e)
		}
	}
	l.mu.Unlock()
	slices.SortFunc(out, func(x, y Entry) int { return y.Expires.Compare(x.Expires) })
	if len(out) > limit {
		return out[:limit], true
	}
	return out, false
}
