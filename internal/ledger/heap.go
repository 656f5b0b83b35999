package ledger

// expiryHeap orders slab indexes by expiry, earliest first. Each entry
// knows its position in the heap (entry.heap in the ledger's own heap,
// entry.nameHeap in a long name list's, entry.clientHeap in its client's)
// so that it can be fixed or removed in place when its expiry changes or
// it goes.
type expiryHeap struct {
	idx []uint32
	// of says which of the entry's positions this heap keeps.
	of heapOf
}

// heapOf names the entry field a heap keeps its positions in.
type heapOf uint8

const (
	ofLedger heapOf = iota // entry.heap
	ofName                 // entry.nameHeap
	ofClient               // entry.clientHeap
)

func (h *expiryHeap) len() int { return len(h.idx) }

// first is the entry that expires first; the heap must not be empty.
func (h *expiryHeap) first() uint32 { return h.idx[0] }

func (h *expiryHeap) pos(s *slab, i uint32) *uint32 {
	switch h.of {
	case ofName:
		return &s.at(i).nameHeap
	case ofClient:
		return &s.at(i).clientHeap
	}
	return &s.at(i).heap
}

// at is entry i's position in the heap.
func (h *expiryHeap) at(s *slab, i uint32) int { return int(*h.pos(s, i)) }

func (h *expiryHeap) push(s *slab, i uint32) {
	*h.pos(s, i) = uint32(len(h.idx))
	h.idx = append(h.idx, i)
	h.up(s, len(h.idx)-1)
}

func (h *expiryHeap) remove(s *slab, at int) {
	last := len(h.idx) - 1
	if at != last {
		h.swap(s, at, last)
	}
	h.idx = h.idx[:last]
	if at != last {
		h.fix(s, at)
	}
}

// fix restores the order after the expiry of the entry at position at
// changed.
func (h *expiryHeap) fix(s *slab, at int) {
	if !h.down(s, at) {
		h.up(s, at)
	}
}

func (h *expiryHeap) less(s *slab, i, j int) bool {
	return s.at(h.idx[i]).expires < s.at(h.idx[j]).expires
}

func (h *expiryHeap) swap(s *slab, i, j int) {
	h.idx[i], h.idx[j] = h.idx[j], h.idx[i]
	*h.pos(s, h.idx[i]), *h.pos(s, h.idx[j]) = uint32(i), uint32(j)
}

func (h *expiryHeap) up(s *slab, j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(s, j, i) {
			break
		}
		h.swap(s, i, j)
		j = i
	}
}

func (h *expiryHeap) down(s *slab, i0 int) bool {
	i, n := i0, len(h.idx)
	for {
		j := 2*i + 1
		if j >= n {
			break
		}
		if r := j + 1; r < n && h.less(s, r, j) {
			j = r
		}
		if !h.less(s, j, i) {
			break
		}
		h.swap(s, i, j)
		i = j
	}
	return i > i0
}
