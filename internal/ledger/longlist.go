package ledger

// A (client, name) list is a linked list through the slab: cheap for the
// two to four addresses of a usual answer, but a name behind a rotating
// CDN collects up to MaxPerName addresses (256 by default; in scope global
// one list holds what the whole fleet was told), and then each address of
// each answer walked the list to find its entry, and each new address
// walked it again to find the one to evict, every step a likely cache
// miss (BenchmarkLedgerRecord measures it). A list that grows to longAt entries gets an index of its own: its
// entries by address, and a heap of them by expiry, earliest first, so
// that both are O(1) and O(log n). Short lists, nearly all of them, cost
// nothing more: the heap position lives in what was the entry's padding.

// The length at which a list gets its index, and the one at which it
// loses it again: apart, so that a list at the boundary does not build
// and drop it in turn. New sets them (tests lower them on a ledger).
const (
	defaultLongAt  = 32
	defaultShortAt = defaultLongAt / 2
)

// longList is the index of one long (client, name) list.
type longList struct {
	at   map[addr16]uint32 // address → slab index
	heap expiryHeap        // ofName
}

// longOf is the index of nk's list, nil when the list is short (n is its
// length, so that short lists skip the map).
func (l *Ledger) longOf(nk nameKey, n uint32) *longList {
	if n < l.shortAt {
		return nil
	}
	return l.long[nk]
}

// find returns the entry of addr on the list nl of nk, or none.
func (l *Ledger) find(nk nameKey, nl nameList, addr addr16) uint32 {
	if ll := l.longOf(nk, nl.n); ll != nil {
		if i, ok := ll.at[addr]; ok {
			return i
		}
		return none
	}
	return l.findIn(nl.head, addr)
}

// oldest returns the entry of the list nl of nk that expires first.
func (l *Ledger) oldest(nk nameKey, nl nameList) uint32 {
	if ll := l.longOf(nk, nl.n); ll != nil {
		return ll.heap.first()
	}
	oldest := none
	for j := nl.head; j != none; j = l.slab.at(j).nextName {
		if oldest == none || l.slab.at(j).expires < l.slab.at(oldest).expires {
			oldest = j
		}
	}
	return oldest
}

// listAdded indexes entry i, just linked at the head of the list nl (its
// new length included) of nk.
func (l *Ledger) listAdded(nk nameKey, nl nameList, i uint32) {
	ll := l.longOf(nk, nl.n)
	if ll == nil {
		if nl.n < l.longAt {
			return
		}
		// The list just became long: index all of it.
		ll = &longList{at: make(map[addr16]uint32, 2*l.longAt), heap: expiryHeap{of: ofName}}
		l.long[nk] = ll
		for j := nl.head; j != none; j = l.slab.at(j).nextName {
			ll.add(&l.slab, j)
		}
		return
	}
	ll.add(&l.slab, i)
}

// listRemoved drops entry i, unlinked but not yet cleared, from the index
// of nk's list, now n long; a list that got short loses its index.
func (l *Ledger) listRemoved(nk nameKey, n uint32, i uint32) {
	ll := l.longOf(nk, n+1) // the length it had: short lists skip the map
	if ll == nil {
		return
	}
	if n < l.shortAt {
		delete(l.long, nk)
		return
	}
	delete(ll.at, l.slab.at(i).addr)
	ll.heap.remove(&l.slab, ll.heap.at(&l.slab, i))
}

// listExpiryChanged restores the heap order after entry i's expiry changed.
func (l *Ledger) listExpiryChanged(nk nameKey, n uint32, i uint32) {
	if ll := l.longOf(nk, n); ll != nil {
		ll.heap.fix(&l.slab, ll.heap.at(&l.slab, i))
	}
}

func (ll *longList) add(s *slab, i uint32) {
	ll.at[s.at(i).addr] = i
	ll.heap.push(s, i)
}
