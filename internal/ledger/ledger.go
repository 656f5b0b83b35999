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
	// Track remembers which entries changed since TakeChanges, for the
	// persistent store.
	Track bool
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
	// changed holds the keys written or removed since TakeChanges (Track).
	changed map[entryKey]struct{}
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
		changed: make(map[entryKey]struct{}),
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
			l.touch(k)
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
		l.insertLocked(&Entry{
			Client: a.Client, Group: a.Group, Name: a.Name, Chain: a.Chain, Addr: addr,
			Rules: a.Rules, Ports: a.Ports, TTL: a.TTL, Learnt: now, Expires: a.Expires,
		})
		l.stats.Learnt++
	}
	return revoke
}

func (l *Ledger) insertLocked(e *Entry) {
	k := entryKey{e.Client, e.Addr, e.Name}
	nk := nameKey{e.Client, e.Name}
	l.entries[k] = e
	l.byName[nk] = append(l.byName[nk], e)
	l.byAddr[e.Addr] = append(l.byAddr[e.Addr], e)
	heap.Push(&l.expiry, e)
	l.touch(k)
}

func (l *Ledger) touch(k entryKey) {
	if l.opts.Track {
		l.changed[k] = struct{}{}
	}
}

// Key identifies an entry: one address told to one client for one name.
type Key struct {
	Client, Addr netip.Addr
	Name         string
}

// TakeChanges returns the entries written since the last call (copies)
// and the keys of those removed, and forgets them. Only with Track.
func (l *Ledger) TakeChanges() (written []Entry, removed []Key) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.changed {
		if e := l.entries[k]; e != nil {
			written = append(written, *e)
		} else {
			removed = append(removed, Key{k.client, k.addr, k.name})
		}
	}
	clear(l.changed)
	return written, removed
}

// Restore puts entries read back from the store into an empty ledger,
// dropping those past retention at now; caps apply as for new entries.
// It returns how many were kept and how many had expired.
func (l *Ledger) Restore(now time.Time, entries []Entry) (kept, dropped int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cutoff := now.Add(-l.opts.Retention)
	for i := range entries {
		e := entries[i]
		k := entryKey{e.Client, e.Addr, e.Name}
		if !e.Expires.After(cutoff) || l.entries[k] != nil || len(l.entries) >= l.opts.MaxEntries ||
			len(l.byName[nameKey{e.Client, e.Name}]) >= l.opts.MaxPerName {
			dropped++
			continue
		}
		l.insertLocked(&e)
		kept++
	}
	// What was read back is what the store has: nothing to write.
	clear(l.changed)
	return kept, dropped
}

// Live returns copies of the entries live at now.
func (l *Ledger) Live(now time.Time) []Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Entry
	for _, e := range l.entries {
		if e.Live(now) {
			out = append(out, *e)
		}
	}
	return out
}

// removeLocked deletes e and returns its kernel elements that no other
// live entry covers (none when e itself had expired: the kernel aged those
// out on its own).
func (l *Ledger) removeLocked(now time.Time, e *Entry) []Elem {
	delete(l.entries, entryKey{e.Client, e.Addr, e.Name})
	l.touch(entryKey{e.Client, e.Addr, e.Name})
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

// Grant is an element and how long the kernel must hold it.
type Grant struct {
	Elem    Elem
	Expires time.Time
}

// Repolicy applies a new policy to what clients were told: allowed says,
// for a client and name, the ports the new policy allows (ok false: the
// name is now denied). Live entries of denied names are removed; entries
// whose ports changed get the new ports. It returns the elements to
// withdraw now (those no other live entry covers) and the elements to add
// for ports newly allowed.
func (l *Ledger) Repolicy(now time.Time, allowed func(client netip.Addr, name string) ([]policy.PortRange, []string, bool)) (revoke []Elem, grant []Grant) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var gone []*Entry
	for _, e := range l.entries {
		if !e.Live(now) {
			continue
		}
		ports, rules, ok := allowed(e.Client, e.Name)
		if !ok {
			gone = append(gone, e)
			continue
		}
		if slices.Equal(ports, e.Ports) {
			e.Rules = rules
			continue
		}
		old := e.Ports
		e.Ports, e.Rules = ports, rules
		l.touch(entryKey{e.Client, e.Addr, e.Name})
		client := e.Client
		if l.opts.Global {
			client = netip.Addr{}
		}
		for _, p := range ports {
			if !slices.Contains(old, p) {
				grant = append(grant, Grant{Elem{client, e.Addr, p}, e.Expires})
			}
		}
		for _, p := range old {
			if !slices.Contains(ports, p) && !l.coveredLocked(now, e, p) {
				revoke = append(revoke, Elem{client, e.Addr, p})
			}
		}
	}
	for _, e := range gone {
		revoke = append(revoke, l.removeLocked(now, e)...)
	}
	return revoke, grant
}

// coveredLocked reports whether a live entry other than e holds e's
// address on port p for e's client (any client in global scope).
func (l *Ledger) coveredLocked(now time.Time, e *Entry, p policy.PortRange) bool {
	for _, o := range l.byAddr[e.Addr] {
		if o != e && o.Live(now) && (l.opts.Global || o.Client == e.Client) && slices.Contains(o.Ports, p) {
			return true
		}
	}
	return false
}

// Grants lists the elements of every live entry, each to live until its
// entry's expiry: what the kernel must hold, for a restart or a rebuild.
func (l *Ledger) Grants(now time.Time) []Grant {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Grant
	for _, e := range l.entries {
		if !e.Live(now) {
			continue
		}
		client := e.Client
		if l.opts.Global {
			client = netip.Addr{}
		}
		for _, p := range e.Ports {
			out = append(out, Grant{Elem{client, e.Addr, p}, e.Expires})
		}
	}
	return out
}
