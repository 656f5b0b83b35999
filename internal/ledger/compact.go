package ledger

import (
	"encoding/binary"
	"net/netip"

	"github.com/fqdngate/fqdngate/internal/policy"
)

// The ledger holds up to millions of entries, so it keeps them compact and
// free of pointers: addresses as 16 bytes and a kind, clients, strings and
// lists interned once and referred to by number. The collector then has
// nothing to scan in the slab of entries, and an entry with its indexes
// costs a third of what a struct of strings, slices and netip.Addrs did
// (192 against 581 bytes at a million, BenchmarkLedgerBytesPerEntry).

// addr16 is a netip.Addr without the zone pointer (zones never occur in
// DNS answers or client sources).
type addr16 struct {
	b    [16]byte
	kind uint8 // 0 invalid, 4, 6
}

func pack(a netip.Addr) addr16 {
	switch {
	case a.Is4():
		return addr16{b: a.As16(), kind: 4}
	case a.Is6():
		return addr16{b: a.As16(), kind: 6}
	}
	return addr16{}
}

func (a addr16) addr() netip.Addr {
	switch a.kind {
	case 4:
		return netip.AddrFrom4([4]byte(a.b[12:]))
	case 6:
		return netip.AddrFrom16(a.b)
	}
	return netip.Addr{}
}

// table interns values by a string key with reference counts, so that a
// name shared by many entries, or a rule list shared by all, is stored
// once and freed with its last entry.
type table[T any] struct {
	ids  map[string]uint32
	keys []string
	vals []T
	refs []uint32
	free []uint32
}

func newTable[T any]() table[T] { return table[T]{ids: make(map[string]uint32)} }

// has takes a reference on key if it is interned.
func (t *table[T]) has(key []byte) (uint32, bool) {
	id, ok := t.ids[string(key)] // no copy: a lookup
	if ok {
		t.refs[id]++
	}
	return id, ok
}

// add interns key, which must not be interned yet, with one reference.
func (t *table[T]) add(key string, val T) uint32 {
	var id uint32
	if n := len(t.free); n > 0 {
		id = t.free[n-1]
		t.free = t.free[:n-1]
		t.keys[id], t.vals[id], t.refs[id] = key, val, 1
	} else {
		id = uint32(len(t.keys))
		t.keys, t.vals, t.refs = append(t.keys, key), append(t.vals, val), append(t.refs, 1)
	}
	t.ids[key] = id
	return id
}

func (t *table[T]) release(id uint32) {
	if t.refs[id]--; t.refs[id] > 0 {
		return
	}
	delete(t.ids, t.keys[id])
	var zero T
	t.keys[id], t.vals[id] = "", zero
	t.free = append(t.free, id)
}

func (t *table[T]) get(id uint32) T { return t.vals[id] }

// joinKey is the interning key of a list of strings: each with its
// length first, so that no two lists share a key whatever bytes they hold
// (a damaged state file may hold any).
func joinKey(buf []byte, list []string) []byte {
	for _, s := range list {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	return buf
}

func portsKey(buf []byte, ports []policy.PortRange) []byte {
	for _, p := range ports {
		buf = append(buf, p.Proto, byte(p.Lo>>8), byte(p.Lo), byte(p.Hi>>8), byte(p.Hi))
	}
	return buf
}

// strs is the ledger's interned clients, strings and lists. The few
// values that every entry shares (groups, rule lists, port sets) have
// tables of their own, apart from the names and CNAME chains that every
// new name adds to: a lookup in a table of a million keys misses the CPU
// cache, in one of ten it does not (a third of Record's time on the
// unique mix was lookups of the one group and rule list in the big ones).
type strs struct {
	clients table[netip.Addr]
	names   table[string]   // queried names
	groups  table[origin]   // client group and answering node pairs
	lists   table[[]string] // CNAME chains
	rules   table[[]string] // rule name lists
	ports   table[[]policy.PortRange]
	keyBuf  []byte
}

func newStrs() strs {
	return strs{clients: newTable[netip.Addr](), names: newTable[string](), groups: newTable[origin](),
		lists: newTable[[]string](), rules: newTable[[]string](), ports: newTable[[]policy.PortRange]()}
}

func addrKey(buf []byte, a netip.Addr) []byte {
	b := a.As16()
	return append(append(buf, b[:]...), pack(a).kind)
}

// client takes a reference on client a.
func (s *strs) client(a netip.Addr) uint32 {
	s.keyBuf = addrKey(s.keyBuf[:0], a)
	if id, ok := s.clients.has(s.keyBuf); ok {
		return id
	}
	return s.clients.add(string(s.keyBuf), a)
}

// clientID is client a's number, if any entry has it.
func (s *strs) clientID(a netip.Addr) (uint32, bool) {
	s.keyBuf = addrKey(s.keyBuf[:0], a)
	id, ok := s.clients.ids[string(s.keyBuf)]
	return id, ok
}

func (s *strs) name(n string) uint32 { return internString(&s.names, n) }

// groupIDs appends the numbers of group's pairs, one per node.
func (s *strs) groupIDs(group string, out []uint32) []uint32 {
	for id, o := range s.groups.vals {
		if s.groups.refs[id] > 0 && o.group == group {
			out = append(out, uint32(id))
		}
	}
	return out
}

// origin is what the groups table interns: an entry's client group with
// the cluster node that answered ("" outside a cluster). A site has a few
// groups and a few nodes, so the pair costs the entry no field of its own.
type origin struct {
	group, node string
}

// group takes a reference on the (group, node) pair.
func (s *strs) group(g, node string) uint32 {
	s.keyBuf = joinKey(s.keyBuf[:0], []string{g, node})
	if id, ok := s.groups.has(s.keyBuf); ok {
		return id
	}
	return s.groups.add(string(s.keyBuf), origin{g, node})
}

func internString(t *table[string], v string) uint32 {
	if id, ok := t.ids[v]; ok {
		t.refs[id]++
		return id
	}
	return t.add(v, v)
}

// chain takes a reference on a CNAME chain, ruleList on a list of rules.
func (s *strs) chain(l []string) uint32 { return s.internList(&s.lists, l) }

func (s *strs) ruleList(l []string) uint32 { return s.internList(&s.rules, l) }

func (s *strs) internList(t *table[[]string], l []string) uint32 {
	s.keyBuf = joinKey(s.keyBuf[:0], l)
	if id, ok := t.has(s.keyBuf); ok {
		return id
	}
	return t.add(string(s.keyBuf), cloneOrNil(l))
}

func (s *strs) portSet(p []policy.PortRange) uint32 {
	s.keyBuf = portsKey(s.keyBuf[:0], p)
	if id, ok := s.ports.has(s.keyBuf); ok {
		return id
	}
	return s.ports.add(string(s.keyBuf), cloneOrNil(p))
}

func cloneOrNil[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return append([]T(nil), s...)
}

// slab holds the entries in pages, so that growing it copies nothing and
// leaves at most one page unused (a slice doubling left up to half).
type slab struct {
	pages [][]entry
	n     uint32
}

const pageBits = 12

func (s *slab) at(i uint32) *entry { return &s.pages[i>>pageBits][i&(1<<pageBits-1)] }

func (s *slab) len() int { return int(s.n) }

// grow adds a zero entry and returns its index.
func (s *slab) grow() uint32 {
	if int(s.n>>pageBits) == len(s.pages) {
		s.pages = append(s.pages, make([]entry, 1<<pageBits))
	}
	s.n++
	return s.n - 1
}
