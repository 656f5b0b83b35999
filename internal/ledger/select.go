package ledger

import (
	"cmp"
	"container/heap"
	"net/netip"
	"slices"
	"time"
)

// selectChunk bounds the slab slots one hold of the lock visits while
// Select or WalkLive scans the whole ledger (scanLocked): a scan of a million entries under the
// lock would stall every query's Record for milliseconds, so the scan
// lets go between chunks and DNS goes on.
const selectChunk = 4096

// Filter selects ledger entries; zero fields match everything.
type Filter struct {
	Client, Addr netip.Addr
	// Name is normalised (lower case, no trailing dot).
	Name string
}

// Select returns copies of up to limit entries matching f, newest expiry
// first, and whether more matched. Only the limit newest are copied:
// candidates are kept as slot numbers in a bounded heap, and exported at
// the end. A filter on the address, or on client and name, walks that
// index; any other scans the slab in chunks, so an entry written during
// the scan may be missed and one removed meanwhile is left out.
func (l *Ledger) Select(f Filter, limit int) ([]Entry, bool) {
	if limit <= 0 {
		return nil, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	m, ok := l.matcherLocked(f)
	if !ok {
		return nil, false
	}
	top := &topExpiry{limit: limit}
	switch {
	case f.Addr.IsValid():
		for i := l.headAddr(m.addr); i != none; i = l.slab.at(i).nextAddr {
			top.offerIf(l, m, i)
		}
	case f.Client.IsValid() && f.Name != "":
		for i := l.head(nameKey{m.client, m.name}); i != none; i = l.slab.at(i).nextName {
			top.offerIf(l, m, i)
		}
	default:
		l.scanLocked(func() bool {
			// The strings may have been released and renumbered while
			// the lock was free.
			m, ok = l.matcherLocked(f)
			return ok
		}, func(i uint32, _ *entry) { top.offerIf(l, m, i) })
	}
	out := make([]Entry, 0, len(top.c))
	for _, c := range top.sorted() {
		if e := l.slab.at(c.i); e.used() && e.expires == c.expires && m.matches(e) {
			out = append(out, l.export(c.i))
		}
	}
	return out, top.more
}

// scanLocked visits every used slot of the slab, letting go of the lock
// every selectChunk slots. It is called with l.mu held; after each pause
// resume says whether to go on (what the caller interned may have been
// renumbered meanwhile).
func (l *Ledger) scanLocked(resume func() bool, visit func(i uint32, e *entry)) {
	for start := uint32(0); start < uint32(l.slab.len()); start += selectChunk {
		if start > 0 {
			l.mu.Unlock()
			l.mu.Lock()
			if !resume() {
				return
			}
		}
		end := min(start+selectChunk, uint32(l.slab.len()))
		for i := start; i < end; i++ {
			if e := l.slab.at(i); e.used() {
				visit(i, e)
			}
		}
	}
}

// matcher is a Filter in the ledger's interned numbers.
type matcher struct {
	f      Filter
	client uint32
	name   uint32
	addr   addr16
}

// matcherLocked interns f's fields; ok is false when a client or name
// it names is not in the ledger at all (nothing can match).
func (l *Ledger) matcherLocked(f Filter) (m matcher, ok bool) {
	m.f = f
	if f.Client.IsValid() {
		if m.client, ok = l.strs.clientID(f.Client); !ok {
			return m, false
		}
	}
	if f.Name != "" {
		if m.name, ok = l.strs.names.ids[f.Name]; !ok {
			return m, false
		}
	}
	m.addr = pack(f.Addr.Unmap())
	return m, true
}

func (m matcher) matches(e *entry) bool {
	return (!m.f.Client.IsValid() || e.client == m.client) &&
		(!m.f.Addr.IsValid() || e.addr == m.addr) &&
		(m.f.Name == "" || e.name == m.name)
}

// topExpiry keeps the limit candidates with the latest expiry: a min-heap
// on expiry, so the earliest of those kept is the one to give way.
type topExpiry struct {
	limit int
	c     []candidate
	more  bool
}

type candidate struct {
	i       uint32
	expires int64
}

func (t *topExpiry) offerIf(l *Ledger, m matcher, i uint32) {
	e := l.slab.at(i)
	if !m.matches(e) {
		return
	}
	c := candidate{i, e.expires}
	switch {
	case len(t.c) < t.limit:
		heap.Push(t, c)
	case c.expires > t.c[0].expires:
		t.more = true
		t.c[0] = c
		heap.Fix(t, 0)
	default:
		t.more = true
	}
}

// sorted returns the candidates newest expiry first, ties in slot order
// (so that a ledger restored from a Select lists them as the original).
func (t *topExpiry) sorted() []candidate {
	out := slices.Clone(t.c)
	slices.SortFunc(out, func(x, y candidate) int {
		if c := cmp.Compare(y.expires, x.expires); c != 0 {
			return c
		}
		return cmp.Compare(x.i, y.i)
	})
	return out
}

func (t *topExpiry) Len() int           { return len(t.c) }
func (t *topExpiry) Less(i, j int) bool { return t.c[i].expires < t.c[j].expires }
func (t *topExpiry) Swap(i, j int)      { t.c[i], t.c[j] = t.c[j], t.c[i] }
func (t *topExpiry) Push(x any)         { t.c = append(t.c, x.(candidate)) }
func (t *topExpiry) Pop() any {
	x := t.c[len(t.c)-1]
	t.c = t.c[:len(t.c)-1]
	return x
}

// Withdraw removes client's entries for name (normalised), live or not,
// and returns the kernel elements that no other live entry covers: what
// the caller removes from the kernel. It is how a query withdraws an
// answer that a reload took away while it was resolved.
func (l *Ledger) Withdraw(now time.Time, client netip.Addr, name string) []Elem {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.strs.clientID(client)
	if !ok {
		return nil
	}
	id, ok := l.strs.names.ids[name]
	if !ok {
		return nil
	}
	var idx []uint32
	for i := l.head(nameKey{c, id}); i != none; i = l.slab.at(i).nextName {
		idx = append(idx, i)
	}
	nowNS := now.UnixNano()
	var out []Elem
	for _, i := range idx {
		out = append(out, l.removeLocked(nowNS, i)...)
	}
	return l.uncoveredLocked(nowNS, out)
}
