package servicetags

import (
	"math"
	"net/netip"
	"slices"
	"strings"

	"github.com/gaissmai/bart"
)

// Index finds the tags whose prefixes contain an address. It is a
// longest-prefix-match trie (github.com/gaissmai/bart) over every prefix of
// a File, v4 and v6 in one table; each prefix carries the indexes of the
// tags that list it (in the public file most prefixes are listed by several
// tags: the service's, its regional tag, AzureCloud and AzureCloud.region).
// An Index is read-only after NewIndex and safe for concurrent use.
type Index struct {
	file  *File
	table bart.Table[[]int32]
}

// NewIndex indexes f; f must not change afterwards.
func NewIndex(f *File) *Index {
	x := &Index{file: f}
	for i := range f.Tags {
		for _, p := range f.Tags[i].Prefixes {
			x.table.Modify(p, func(old []int32, _ bool) ([]int32, bool) {
				if n := len(old); n > 0 && old[n-1] == int32(i) {
					return old, false // a tag listing a prefix twice
				}
				return append(old, int32(i)), false
			})
		}
	}
	return x
}

// File is the indexed file.
func (x *Index) File() *File { return x.file }

// Prefixes is how many distinct prefixes the index holds.
func (x *Index) Prefixes() int { return x.table.Size() }

// Match is the answer of Lookup.
type Match struct {
	// Prefix is the most specific prefix of the file that contains the
	// address; invalid when none does.
	Prefix netip.Prefix
	// Tags are the tags listing Prefix, by name.
	Tags []*Tag
}

// Lookup returns the most specific prefix containing addr and the tags
// that list it. ok is false when no tag contains addr.
func (x *Index) Lookup(addr netip.Addr) (m Match, ok bool) {
	pfx, tags, ok := x.lookup(addr)
	if !ok {
		return Match{}, false
	}
	m.Prefix = pfx
	m.Tags = make([]*Tag, len(tags))
	for i, t := range tags {
		m.Tags[i] = &x.file.Tags[t]
	}
	slices.SortFunc(m.Tags, func(a, b *Tag) int { return strings.Compare(a.Name, b.Name) })
	return m, true
}

// Contains reports whether any tag contains addr; it does not allocate.
func (x *Index) Contains(addr netip.Addr) bool {
	_, ok := x.table.Lookup(addr.Unmap())
	return ok
}

func (x *Index) lookup(addr netip.Addr) (netip.Prefix, []int32, bool) {
	addr = addr.Unmap()
	if !addr.IsValid() {
		return netip.Prefix{}, nil, false
	}
	bits := 32
	if addr.Is6() {
		bits = 128
	}
	pfx, tags, ok := x.table.LookupPrefixLPM(netip.PrefixFrom(addr, bits))
	return pfx, tags, ok
}

// All returns every tag containing addr, by any of their prefixes, from the
// broadest prefix to the most specific (AzureCloud before Storage.EastUS).
func (x *Index) All(addr netip.Addr) []*Tag {
	addr = addr.Unmap()
	bits := 32
	if addr.Is6() {
		bits = 128
	}
	var out []*Tag
	seen := map[int32]bool{}
	var chain [][]int32
	for _, tags := range x.table.Supernets(netip.PrefixFrom(addr, bits)) {
		chain = append(chain, tags)
	}
	// Supernets yields the most specific first.
	for i := len(chain) - 1; i >= 0; i-- {
		for _, t := range chain[i] {
			if !seen[t] {
				seen[t] = true
				out = append(out, &x.file.Tags[t])
			}
		}
	}
	return out
}

// Breadth is what a set of prefixes opens: IPv4 addresses, and IPv6 in
// /64 networks (a count of v6 addresses says nothing: one /64 is 2^64).
type Breadth struct {
	V4 uint64 `json:"v4_addresses"`
	// V6 counts /64s; a longer prefix counts as the /64 holding it.
	V6 uint64 `json:"v6_64s"`
}

// BreadthOf measures ps, overlaps counted once.
func BreadthOf(ps []netip.Prefix) Breadth {
	var v4, v6 []netip.Prefix
	for _, p := range ps {
		switch {
		case !p.IsValid():
		case p.Addr().Is4():
			v4 = append(v4, p)
		case p.Bits() > 64:
			v6 = append(v6, netip.PrefixFrom(p.Addr(), 64).Masked())
		default:
			v6 = append(v6, p)
		}
	}
	b := Breadth{V4: CountAddresses(v4)}
	for _, p := range union(v6) {
		b.V6 = addSat(b.V6, sizeIn(p, 64))
	}
	return b
}

func (b Breadth) String() string {
	v4 := func(prefix string) string {
		if b.V4 == 1 {
			return "1 " + prefix + "address"
		}
		return Count(b.V4) + " " + prefix + "addresses"
	}
	v6 := Count(b.V6) + " IPv6 /64"
	if b.V6 != 1 {
		v6 += "s"
	}
	switch {
	case b.V6 == 0:
		return v4("")
	case b.V4 == 0:
		return v6
	}
	return v4("IPv4 ") + " and " + v6
}

// size orders breadths: a /64 weighs as one address, since it is usually
// one host's or one service's network.
func (b Breadth) size() uint64 { return addSat(b.V4, b.V6) }

// CountAddresses is how many addresses ps hold together, overlaps counted
// once, saturating at math.MaxUint64 (a v6 /64 alone is 2^64).
func CountAddresses(ps []netip.Prefix) uint64 {
	var total uint64
	for _, p := range union(ps) {
		total = addSat(total, PrefixSize(p))
	}
	return total
}

// Union returns ps masked and sorted, without the prefixes another one of
// ps contains.
func Union(ps []netip.Prefix) []netip.Prefix { return union(ps) }

// union returns ps without the prefixes another one of ps contains.
func union(ps []netip.Prefix) []netip.Prefix {
	sorted := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if p.IsValid() {
			sorted = append(sorted, p.Masked())
		}
	}
	// Shorter prefixes first among equal starts, so that a contained prefix
	// always follows the one containing it.
	slices.SortFunc(sorted, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	out := sorted[:0]
	var last netip.Prefix
	for _, p := range sorted {
		if last.IsValid() && last.Overlaps(p) {
			continue // sorted by start: an overlap means last contains p
		}
		last = p
		out = append(out, p)
	}
	return out
}

// PrefixSize is how many addresses p holds, saturating at math.MaxUint64.
func PrefixSize(p netip.Prefix) uint64 { return sizeIn(p, p.Addr().BitLen()) }

// sizeIn is how many /unit networks p holds (p.Bits() <= unit).
func sizeIn(p netip.Prefix, unit int) uint64 {
	host := unit - p.Bits()
	if host >= 64 {
		return math.MaxUint64
	}
	return 1 << host
}

func addSat(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}
