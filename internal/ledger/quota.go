package ledger

import "net/netip"

// Fairness between clients (DESIGN section 2, invariant 4). One device
// flooding random names under an allowed wildcard must not evict what
// other devices were told. Who loses an entry when a new one needs room:
//
//  1. Per name: at MaxPerName, the (client, name) list's entry that
//     expires first.
//  2. Per client: a client at MaxPerClient loses its own entry that
//     expires first, never another client's.
//  3. Global: at MaxEntries, the entry that expires first anywhere if it
//     has already expired (it allows nothing any more: nobody loses a live
//     address); otherwise the entry that expires first of the client that
//     holds the most entries. A client holding fewer entries than another
//     never loses one to the global cap while that other one has any.
//
// Each client has its own expiry heap for rules 2 and 3 (its position in
// entry.clientHeap, its slots 4 bytes per entry), and the clients are in a
// heap by how many entries they hold, largest first, for rule 3.

// clientShare is one client's entries, by client number.
type clientShare struct {
	heap expiryHeap // ofClient
	// at is the client's position in clientShares.big, none when it holds
	// no entry.
	at uint32
}

// clientShares is every client's share, indexed by the client's number in
// strs.clients; big orders the clients that hold entries by how many,
// most first.
type clientShares struct {
	by  []clientShare
	big []uint32
}

func (c *clientShares) share(client uint32) *clientShare {
	for int(client) >= len(c.by) {
		c.by = append(c.by, clientShare{heap: expiryHeap{of: ofClient}, at: none})
	}
	return &c.by[client]
}

// count is how many entries client holds.
func (c *clientShares) count(client uint32) int {
	if int(client) >= len(c.by) {
		return 0
	}
	return c.by[client].heap.len()
}

// oldest is client's entry that expires first; the client must hold one.
func (c *clientShares) oldest(client uint32) uint32 { return c.by[client].heap.first() }

// added indexes slab entry i, just inserted, of client.
func (c *clientShares) added(s *slab, client, i uint32) {
	sh := c.share(client)
	sh.heap.push(s, i)
	if sh.at == none {
		sh.at = uint32(len(c.big))
		c.big = append(c.big, client)
	}
	c.up(int(sh.at))
}

// removed drops the entry at position pos of client's heap; the entry is
// still in the slab.
func (c *clientShares) removed(s *slab, client, pos uint32) {
	sh := &c.by[client]
	sh.heap.remove(s, int(pos))
	at := int(sh.at)
	if sh.heap.len() > 0 {
		c.down(at)
		return
	}
	// The client holds nothing now: out of big, and its heap's memory
	// goes with it (clients come and go; their numbers are reused).
	sh.heap.idx = nil
	last := len(c.big) - 1
	if at != last {
		c.swap(at, last)
	}
	c.big = c.big[:last]
	sh.at = none
	if at != last {
		c.down(at)
		c.up(at)
	}
}

// expiryChanged restores the order of client's heap after entry i's
// expiry changed.
func (c *clientShares) expiryChanged(s *slab, client, i uint32) {
	h := &c.by[client].heap
	h.fix(s, h.at(s, i))
}

func (c *clientShares) more(i, j int) bool {
	return c.by[c.big[i]].heap.len() > c.by[c.big[j]].heap.len()
}

func (c *clientShares) swap(i, j int) {
	c.big[i], c.big[j] = c.big[j], c.big[i]
	c.by[c.big[i]].at, c.by[c.big[j]].at = uint32(i), uint32(j)
}

func (c *clientShares) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !c.more(j, i) {
			break
		}
		c.swap(i, j)
		j = i
	}
}

func (c *clientShares) down(i int) {
	n := len(c.big)
	for {
		j := 2*i + 1
		if j >= n {
			return
		}
		if r := j + 1; r < n && c.more(r, j) {
			j = r
		}
		if !c.more(j, i) {
			return
		}
		c.swap(i, j)
		i = j
	}
}

// globalVictim is the entry rule 3 evicts at MaxEntries; the ledger must
// not be empty.
func (l *Ledger) globalVictim(now int64) uint32 {
	if first := l.expiry.first(); !l.slab.at(first).live(now) {
		return first
	}
	return l.clients.oldest(l.clients.big[0])
}

// justLearnt reports whether entry i is one the answer being recorded (for
// name, at now) made.
func (l *Ledger) justLearnt(i, name uint32, now int64) bool {
	e := l.slab.at(i)
	return e.name == name && e.learnt == now
}

// ClientEntries is how many entries the ledger holds for client, expired
// ones included (what MaxPerClient counts).
func (l *Ledger) ClientEntries(client netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	id, ok := l.strs.clientID(client)
	if !ok {
		return 0
	}
	return l.clients.count(id)
}
