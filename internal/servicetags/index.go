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

// CountAddresses is how many addresses ps hold together, overlaps counted
// once, saturating at math.MaxUint64 (a v6 /64 alone is 2^64).
func CountAddresses(ps []netip.Prefix) uint64 {
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
	var total uint64
	var last netip.Prefix
	for _, p := range sorted {
		if last.IsValid() && last.Overlaps(p) {
			continue // sorted by start: an overlap means last contains p
		}
		last = p
		total = addSat(total, PrefixSize(p))
	}
	return total
}

// PrefixSize is how many addresses p holds, saturating at math.MaxUint64.
func PrefixSize(p netip.Prefix) uint64 {
	host := p.Addr().BitLen() - p.Bits()
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
