package ledger

import (
	"math"
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
	// Node is the cluster node that answered; "" outside a cluster.
	Node string
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

// Entry is one address told to one client for one name: a copy of what
// the ledger holds, for readers.
type Entry struct {
	Client netip.Addr
	Group  string
	// Node is the cluster node whose answer this is (the newest one's,
	// when several told the client the address); "" outside a cluster.
	Node    string
	Name    string
	Chain   []string
	Addr    netip.Addr
	Rules   []string
	Ports   []policy.PortRange
	TTL     time.Duration
	Learnt  time.Time
	Expires time.Time
}

// Live reports whether the entry still allows traffic at now.
func (e *Entry) Live(now time.Time) bool { return now.Before(e.Expires) }

// entry is how the ledger holds an Entry (see compact.go): no pointers,
// strings and lists by interned number, times in Unix nanoseconds, and
// the links of the per-name and per-address lists it is on.
type entry struct {
	addr addr16 // kind 0: a free slot
	// ttl is in seconds, in 24 bits (194 days; max_ttl is at most 7):
	// it fills the padding after addr, which leaves room for clientHeap
	// without growing the entry.
	ttl          ttl24
	client       uint32 // in strs.clients
	name, group  uint32 // in strs.names, strs.groups (group and node)
	chain, rules uint32 // in strs.lists, strs.rules
	ports        uint32 // in strs.ports
	clientHeap   uint32 // position in its client's expiry heap (quota.go)
	learnt       int64
	expires      int64
	heap         uint32 // position in the ledger's expiry heap
	nameHeap     uint32 // position in its name list's heap, if the list is long (longlist.go)
	// Doubly linked lists through the slab; none ends them.
	nextName, prevName uint32
	nextAddr, prevAddr uint32
}

func (e *entry) used() bool { return e.addr.kind != 0 }

const none = ^uint32(0)

func (e *entry) live(now int64) bool { return now < e.expires }

type nameKey struct {
	client, name uint32
}

// nameList is the head and length of a (client, name) list.
type nameList struct {
	head uint32
	n    uint32
}

// Options bound a Ledger.
type Options struct {
	// MaxPerName caps the addresses kept per client and name.
	MaxPerName int
	// MaxEntries caps all entries, expired ones included.
	MaxEntries int
	// MaxPerClient caps the entries of one client, expired ones
	// included; 0 leaves only MaxEntries. See quota.go for who is evicted.
	MaxPerClient int
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
// for updates of the slab, its indexes and the heap.
type Ledger struct {
	opts Options

	mu     sync.Mutex
	slab   slab
	free   []uint32
	n      int // entries in use
	byName map[nameKey]nameList
	byAddr map[addr16]uint32 // head of the address's list
	expiry expiryHeap
	long   map[nameKey]*longList // the index of each long name list
	// longAt and shortAt: see longlist.go.
	longAt, shortAt uint32
	strs            strs
	// clients is each client's share, by client number (quota.go).
	clients clientShares
	stats   Stats
	// changed holds the keys written or removed since TakeChanges (Track).
	changed map[Key]struct{}
}

// Stats counts what the ledger did since it was made.
type Stats struct {
	Entries        int
	Learnt         uint64
	EvictedPerName uint64
	// EvictedPerClient counts entries a client's own new answers evicted
	// at MaxPerClient.
	EvictedPerClient uint64
	// EvictedGlobal counts entries evicted at MaxEntries.
	EvictedGlobal uint64
	Collected     uint64
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
	if o.MaxPerClient <= 0 || o.MaxPerClient > o.MaxEntries {
		o.MaxPerClient = o.MaxEntries
	}
	return &Ledger{
		opts:    o,
		changed: make(map[Key]struct{}),
		byName:  make(map[nameKey]nameList),
		byAddr:  make(map[addr16]uint32),
		long:    make(map[nameKey]*longList),
		longAt:  defaultLongAt,
		shortAt: defaultShortAt,
		strs:    newStrs(),
	}
}

// GrantsOf returns the kernel elements an answer needs, each to live
// until the answer's expiry.
func (l *Ledger) GrantsOf(a Answer) []Grant {
	client := a.Client
	if l.opts.Global {
		client = netip.Addr{}
	}
	out := make([]Grant, 0, len(a.Addrs)*len(a.Ports))
	for _, addr := range a.Addrs {
		for _, p := range a.Ports {
			out = append(out, Grant{Elem{Client: client, Addr: addr, Port: p}, a.Expires})
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
	nowNS := now.UnixNano()
	// Intern the answer's strings once, holding a reference for the
	// length of the call: each entry takes its own, and the numbers stay
	// valid while evictions release others.
	ids := l.refAnswer(a)
	defer l.releaseAnswer(ids)
	nk := nameKey{ids.client, ids.name}
	// The name's list is looked up once and carried through the loop (in
	// a map of a million names each lookup is a cache miss), and read
	// again only after an eviction, which may have changed it.
	nl := l.nameList(nk)
	for _, addr := range a.Addrs {
		ad := pack(addr)
		if i := l.find(nk, nl, ad); i != none {
			e := l.slab.at(i)
			if e.group != ids.group || e.chain != ids.chain || e.rules != ids.rules || e.ports != ids.ports {
				l.releaseStrs(e)
				l.refStrs(e, ids)
			}
			e.ttl, e.learnt = ttlSeconds(a.TTL), nowNS
			if x := a.Expires.UnixNano(); x > e.expires {
				e.expires = x
				l.expiry.fix(&l.slab, int(e.heap))
				l.listExpiryChanged(nk, nl.n, i)
				l.clients.expiryChanged(&l.slab, e.client, i)
			}
			l.touch(i)
			continue
		}
		evicted := false
		if int(nl.n) >= l.opts.MaxPerName {
			revoke = append(revoke, l.removeLocked(nowNS, l.oldest(nk, nl))...)
			l.stats.EvictedPerName++
			evicted = true
		}
		// Without a quota of its own (MaxPerClient is MaxEntries) a client
		// filling the ledger meets the global cap. The answer's own entries
		// are not evicted for it (the client has been told them all): an
		// answer with more addresses than the quota keeps them, and the
		// client's next answer brings it back below.
		for l.opts.MaxPerClient < l.opts.MaxEntries && l.clients.count(ids.client) >= l.opts.MaxPerClient {
			v := l.clients.oldest(ids.client)
			if l.justLearnt(v, ids.name, nowNS) {
				break
			}
			revoke = append(revoke, l.removeLocked(nowNS, v)...)
			l.stats.EvictedPerClient++
			evicted = true
		}
		if l.n >= l.opts.MaxEntries {
			revoke = append(revoke, l.removeLocked(nowNS, l.globalVictim(nowNS))...)
			l.stats.EvictedGlobal++
			evicted = true
		}
		if evicted {
			nl = l.nameList(nk)
		}
		e := entry{client: ids.client, name: ids.name, addr: ad, ttl: ttlSeconds(a.TTL), learnt: nowNS, expires: a.Expires.UnixNano()}
		l.strs.clients.refs[ids.client]++
		l.strs.names.refs[ids.name]++
		l.refStrs(&e, ids)
		nl = l.insertLocked(e, nl)
		l.stats.Learnt++
	}
	// The answer's own elements are in the kernel already (rule before
	// answer): an evicted entry's element that this answer also holds
	// must stay.
	return l.uncoveredLocked(nowNS, revoke)
}

// Uncovered keeps of elems those that no live entry covers: of what
// several Record calls returned, an element that a later call's entry
// holds again must stay in the kernel.
func (l *Ledger) Uncovered(now time.Time, elems []Elem) []Elem {
	if len(elems) == 0 {
		return elems
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.uncoveredLocked(now.UnixNano(), elems)
}

// uncoveredLocked keeps the elements that no live entry covers.
func (l *Ledger) uncoveredLocked(now int64, elems []Elem) []Elem {
	out := elems[:0]
	for _, e := range elems {
		// A client no entry holds any more has no number: 0 would be
		// another client's, whose entries would then seem to cover it.
		client, known := l.strs.clientID(e.Client)
		if !known && !l.opts.Global || !l.coveredLocked(now, none, client, pack(e.Addr), e.Port) {
			out = append(out, e)
		}
	}
	return out
}

// ttl24 is a TTL in seconds in three bytes, big endian.
type ttl24 [3]byte

func ttlSeconds(d time.Duration) ttl24 {
	s := uint32(min(max(d, 0)/time.Second, 1<<24-1))
	return ttl24{byte(s >> 16), byte(s >> 8), byte(s)}
}

func (t ttl24) duration() time.Duration {
	return time.Duration(uint32(t[0])<<16|uint32(t[1])<<8|uint32(t[2])) * time.Second
}

// answerIDs is an answer's interned client, strings and lists.
type answerIDs struct {
	client, name, group, chain, rules, ports uint32
}

// refAnswer interns a's client, strings and lists, one reference each.
func (l *Ledger) refAnswer(a Answer) answerIDs {
	return answerIDs{
		client: l.strs.client(a.Client), name: l.strs.name(a.Name), group: l.strs.group(a.Group, a.Node),
		chain: l.strs.chain(a.Chain), rules: l.strs.ruleList(a.Rules), ports: l.strs.portSet(a.Ports),
	}
}

func (l *Ledger) releaseAnswer(ids answerIDs) {
	l.strs.clients.release(ids.client)
	l.strs.names.release(ids.name)
	l.strs.groups.release(ids.group)
	l.strs.lists.release(ids.chain)
	l.strs.rules.release(ids.rules)
	l.strs.ports.release(ids.ports)
}

// refStrs gives e the group, chain, rules and ports of ids, taking a
// reference on each.
func (l *Ledger) refStrs(e *entry, ids answerIDs) {
	e.group, e.chain, e.rules, e.ports = ids.group, ids.chain, ids.rules, ids.ports
	l.strs.groups.refs[e.group]++
	l.strs.lists.refs[e.chain]++
	l.strs.rules.refs[e.rules]++
	l.strs.ports.refs[e.ports]++
}

func (l *Ledger) releaseStrs(e *entry) {
	l.strs.groups.release(e.group)
	l.strs.lists.release(e.chain)
	l.strs.rules.release(e.rules)
	l.strs.ports.release(e.ports)
}

// findLocked returns the entry of addr on the (client, name) list, or none.
func (l *Ledger) findLocked(nk nameKey, addr addr16) uint32 { return l.find(nk, l.nameList(nk), addr) }

// findIn returns the entry of addr on the name list that starts at head.
func (l *Ledger) findIn(head uint32, addr addr16) uint32 {
	for i := head; i != none; i = l.slab.at(i).nextName {
		if l.slab.at(i).addr == addr {
			return i
		}
	}
	return none
}

// nameList is the (client, name) list of k; its head is none when empty.
func (l *Ledger) nameList(k nameKey) nameList {
	if nl, ok := l.byName[k]; ok {
		return nl
	}
	return nameList{head: none}
}

// insertLocked adds e at the head of its name list nl (what nameList
// returns for e's client and name) and returns the list as it is now.
func (l *Ledger) insertLocked(e entry, nl nameList) nameList {
	var i uint32
	if n := len(l.free); n > 0 {
		i = l.free[n-1]
		l.free = l.free[:n-1]
	} else {
		i = l.slab.grow()
	}
	nk := nameKey{e.client, e.name}
	e.prevName, e.prevAddr = none, none
	e.nextName = nl.head
	e.nextAddr = l.headAddr(e.addr)
	*l.slab.at(i) = e
	if e.nextName != none {
		l.slab.at(e.nextName).prevName = i
	}
	if e.nextAddr != none {
		l.slab.at(e.nextAddr).prevAddr = i
	}
	nl = nameList{i, nl.n + 1}
	l.byName[nk] = nl
	l.byAddr[e.addr] = i
	l.n++
	l.expiry.push(&l.slab, i)
	l.clients.added(&l.slab, e.client, i)
	l.listAdded(nk, nl, i)
	l.touch(i)
	return nl
}

func (l *Ledger) head(k nameKey) uint32 {
	if nl, ok := l.byName[k]; ok {
		return nl.head
	}
	return none
}

func (l *Ledger) headAddr(a addr16) uint32 {
	if i, ok := l.byAddr[a]; ok {
		return i
	}
	return none
}

func (l *Ledger) touch(i uint32) {
	if l.opts.Track {
		e := l.slab.at(i)
		l.changed[Key{l.strs.clients.get(e.client), e.addr.addr(), l.strs.names.get(e.name)}] = struct{}{}
	}
}

// export is the Entry of slab index i, for readers.
func (l *Ledger) export(i uint32) Entry {
	e := l.slab.at(i)
	og := l.strs.groups.get(e.group)
	return Entry{
		Client: l.strs.clients.get(e.client), Group: og.group, Node: og.node, Name: l.strs.names.get(e.name),
		Chain: cloneOrNil(l.strs.lists.get(e.chain)), Addr: e.addr.addr(),
		Rules: cloneOrNil(l.strs.rules.get(e.rules)), Ports: cloneOrNil(l.strs.ports.get(e.ports)),
		TTL:    e.ttl.duration(),
		Learnt: time.Unix(0, e.learnt), Expires: time.Unix(0, e.expires),
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
		if i := l.lookupLocked(k); i != none {
			written = append(written, l.export(i))
		} else {
			removed = append(removed, k)
		}
	}
	clear(l.changed)
	return written, removed
}

func (l *Ledger) lookupLocked(k Key) uint32 {
	id, ok := l.strs.names.ids[k.Name]
	client, known := l.strs.clientID(k.Client)
	if !ok || !known {
		return none
	}
	return l.findLocked(nameKey{client, id}, pack(k.Addr))
}

// Restore puts entries read back from the store into an empty ledger,
// dropping those past retention at now; caps apply as for new entries.
// It returns how many were kept and how many had expired.
func (l *Ledger) Restore(now time.Time, entries []Entry) (kept, dropped int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cutoff := now.Add(-l.opts.Retention)
	for _, e := range entries {
		k := Key{e.Client, e.Addr, e.Name}
		if !e.Expires.After(cutoff) || l.lookupLocked(k) != none || l.n >= l.opts.MaxEntries {
			dropped++
			continue
		}
		id, ok := l.strs.names.ids[e.Name]
		client, known := l.strs.clientID(e.Client)
		if ok && known && int(l.byName[nameKey{client, id}].n) >= l.opts.MaxPerName || !e.Addr.IsValid() ||
			known && l.clients.count(client) >= l.opts.MaxPerClient {
			dropped++
			continue
		}
		ids := l.refAnswer(Answer{Client: e.Client, Name: e.Name, Group: e.Group, Node: e.Node, Chain: e.Chain, Rules: e.Rules, Ports: e.Ports})
		in := entry{client: ids.client, name: ids.name, addr: pack(e.Addr), ttl: ttlSeconds(e.TTL),
			learnt: e.Learnt.UnixNano(), expires: e.Expires.UnixNano()}
		l.strs.clients.refs[ids.client]++
		l.strs.names.refs[ids.name]++
		l.refStrs(&in, ids)
		l.releaseAnswer(ids)
		l.insertLocked(in, l.nameList(nameKey{in.client, in.name}))
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
	nowNS := now.UnixNano()
	var out []Entry
	for i := range uint32(l.slab.len()) {
		if e := l.slab.at(i); e.used() && e.live(nowNS) {
			out = append(out, l.export(uint32(i)))
		}
	}
	return out
}

// removeLocked deletes entry i and returns its kernel elements that no
// other live entry covers (none when it had expired: the kernel aged
// those out on its own).
func (l *Ledger) removeLocked(now int64, i uint32) []Elem {
	l.touch(i)
	e := *l.slab.at(i) // a copy: the slot is cleared below
	nk := nameKey{e.client, e.name}
	// Unlink from the name's list and the address's list.
	nl := l.byName[nk]
	if nl.n--; nl.n == 0 {
		delete(l.byName, nk)
	} else {
		if e.prevName != none {
			l.slab.at(e.prevName).nextName = e.nextName
		} else {
			nl.head = e.nextName
		}
		if e.nextName != none {
			l.slab.at(e.nextName).prevName = e.prevName
		}
		l.byName[nk] = nl
	}
	l.listRemoved(nk, nl.n, i)
	if e.prevAddr != none {
		l.slab.at(e.prevAddr).nextAddr = e.nextAddr
	} else if e.nextAddr != none {
		l.byAddr[e.addr] = e.nextAddr
	} else {
		delete(l.byAddr, e.addr)
	}
	if e.nextAddr != none {
		l.slab.at(e.nextAddr).prevAddr = e.prevAddr
	}
	l.expiry.remove(&l.slab, int(e.heap))
	l.clients.removed(&l.slab, e.client, e.clientHeap)
	*l.slab.at(i) = entry{}
	l.free = append(l.free, i)
	l.n--

	var out []Elem
	if e.live(now) {
		client := l.strs.clients.get(e.client)
		if l.opts.Global {
			client = netip.Addr{}
		}
		for _, p := range l.strs.ports.get(e.ports) {
			if !l.coveredLocked(now, none, e.client, e.addr, p) {
				out = append(out, Elem{Client: client, Addr: e.addr.addr(), Port: p})
			}
		}
	}
	l.strs.names.release(e.name)
	l.strs.clients.release(e.client)
	l.releaseStrs(&e)
	return out
}

// coveredLocked reports whether a live entry other than skip holds addr
// on port p for client (any client in global scope).
func (l *Ledger) coveredLocked(now int64, skip, client uint32, addr addr16, p policy.PortRange) bool {
	for j := l.headAddr(addr); j != none; j = l.slab.at(j).nextAddr {
		o := l.slab.at(j)
		if j != skip && o.live(now) && (l.opts.Global || o.client == client) && slices.Contains(l.strs.ports.get(o.ports), p) {
			return true
		}
	}
	return false
}

// GC removes entries that expired more than the retention period before
// now, and returns how many it removed.
func (l *Ledger) GC(now time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	cutoff := now.Add(-l.opts.Retention).UnixNano()
	n := 0
	for l.expiry.len() > 0 && l.slab.at(l.expiry.first()).expires <= cutoff {
		l.removeLocked(now.UnixNano(), l.expiry.first())
		n++
	}
	l.stats.Collected += uint64(n)
	return n
}

// Lookup returns copies of all the entries for addr, live and expired,
// newest expiry first. An invalid client matches every client.
func (l *Ledger) Lookup(addr netip.Addr, client netip.Addr) []Entry {
	out, _ := l.Select(Filter{Client: client, Addr: addr}, math.MaxInt)
	return out
}

// Stats returns the counters.
func (l *Ledger) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats
	s.Entries = l.n
	return s
}

// Told is what one live entry says was told, as Repolicy shows it to the
// new policy: the address and the CNAME chain it came through matter
// (private answers, cname_targets), not only the name.
type Told struct {
	Client netip.Addr
	Name   string
	Chain  []string
	Addr   netip.Addr
}

// Grant is an element and how long the kernel must hold it: what an
// answer asks of the enforcer.
type Grant struct {
	Elem
	Expires time.Time
}

// Repolicy applies a new policy to what clients were told: allowed says,
// for a client and name, the ports the new policy allows (ok false: the
// name is now denied). Live entries of denied names are removed; entries
// whose ports changed get the new ports. It returns the elements to
// withdraw now (those no other live entry covers) and the elements to add
// for ports newly allowed.
func (l *Ledger) Repolicy(now time.Time, allowed func(Told) ([]policy.PortRange, []string, bool)) (revoke []Elem, grant []Grant) {
	l.mu.Lock()
	defer l.mu.Unlock()
	nowNS := now.UnixNano()
	var gone []uint32
	for i := range uint32(l.slab.len()) {
		e := l.slab.at(i)
		if !e.used() || !e.live(nowNS) {
			continue
		}
		// The chain is the ledger's own slice: the callback only reads it.
		ports, rules, ok := allowed(Told{Client: l.strs.clients.get(e.client), Name: l.strs.names.get(e.name),
			Chain: l.strs.lists.get(e.chain), Addr: e.addr.addr()})
		if !ok {
			gone = append(gone, uint32(i))
			continue
		}
		old := l.strs.ports.get(e.ports)
		newRules := l.strs.ruleList(rules)
		l.strs.rules.release(e.rules)
		e.rules = newRules
		if slices.Equal(ports, old) {
			continue
		}
		newPorts := l.strs.portSet(ports)
		l.strs.ports.release(e.ports)
		e.ports = newPorts
		l.touch(uint32(i))
		client := l.strs.clients.get(e.client)
		if l.opts.Global {
			client = netip.Addr{}
		}
		addr, expires := e.addr.addr(), time.Unix(0, e.expires)
		for _, p := range ports {
			if !slices.Contains(old, p) {
				grant = append(grant, Grant{Elem{client, addr, p}, expires})
			}
		}
		for _, p := range old {
			if !slices.Contains(ports, p) && !l.coveredLocked(nowNS, uint32(i), e.client, e.addr, p) {
				revoke = append(revoke, Elem{client, addr, p})
			}
		}
	}
	for _, i := range gone {
		revoke = append(revoke, l.removeLocked(nowNS, i)...)
	}
	return l.uncoveredLocked(nowNS, revoke), grant
}

// Grants lists the elements of every live entry, each to live until its
// entry's expiry: what the kernel must hold, for a restart or a rebuild.
func (l *Ledger) Grants(now time.Time) []Grant {
	l.mu.Lock()
	defer l.mu.Unlock()
	nowNS := now.UnixNano()
	var out []Grant
	for i := range uint32(l.slab.len()) {
		e := l.slab.at(i)
		if !e.used() || !e.live(nowNS) {
			continue
		}
		client := l.strs.clients.get(e.client)
		if l.opts.Global {
			client = netip.Addr{}
		}
		for _, p := range l.strs.ports.get(e.ports) {
			out = append(out, Grant{Elem{client, e.addr.addr(), p}, time.Unix(0, e.expires)})
		}
	}
	return out
}
