package enforce

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"

	"github.com/fqdngate/fqdngate/internal/policy"
)

// StaticRule is a rule's static part (config static:): destination
// prefixes open on the rule's ports for the rule's client group, with no
// answer and no timeout. Each rule gets an interval set per family of its
// own, keyed like the allow sets ([client range .] destination range .
// l4proto . port range: a concatenation of ranges, the pipapo set type),
// because pipapo refuses overlapping elements: within one rule the ranges
// are made disjoint, across rules they may overlap.
type StaticRule struct {
	// Name is "group/rule", for errors and set comments.
	Name string
	// Clients are the group's networks; Except are other groups'
	// networks nested in them (their clients are those groups', as the
	// policy's longest-prefix match has it). Both unused with Spec.Global.
	Clients, Except []netip.Prefix
	Dests           []netip.Prefix
	Ports           []policy.PortRange
}

// staticSetName names rule i's set for a family.
func staticSetName(v6 bool, i int) string {
	return fmt.Sprintf("%s_%d", pick(v6, "static6", "static4"), i)
}

// buildStatic queues the static sets, their elements and a lookup rule for
// each into the check chain (called from build, before the drop).
func buildStatic(cc *nftables.Conn, t *nftables.Table, check *nftables.Chain, s Spec) {
	for i, r := range s.Static {
		for _, v6 := range []bool{false, true} {
			els := staticElements(r, v6, s.Global)
			if len(els) == 0 {
				continue
			}
			set := &nftables.Set{Table: t, Name: staticSetName(v6, i), KeyType: keyType(v6, s.Global), Concatenation: true, Interval: true}
			first := min(len(els), maxMsgElems)
			// Malformed descriptions only (fixed at compile time); Flush
			// reports the kernel's errors.
			_ = cc.AddSet(set, els[:first])
			for rest := els[first:]; len(rest) > 0; {
				k := min(len(rest), maxMsgElems)
				_ = cc.SetAddElements(set, rest[:k])
				rest = rest[k:]
			}
			cc.AddRule(&nftables.Rule{Table: t, Chain: check, Exprs: append(lookupKey(v6, s.Global, set.Name), accept_())})
		}
	}
}

// addrRange is an inclusive range of addresses of one family.
type addrRange struct{ lo, hi netip.Addr }

// staticElements lays out a rule's elements for one family: the cross
// product of its disjoint client ranges, destination prefixes and merged
// port ranges, so that no two overlap.
func staticElements(r StaticRule, v6, global bool) []nftables.SetElement {
	dests := prefixRanges(r.Dests, v6)
	clients := []addrRange{{}}
	if !global {
		clients = subtract(r.Clients, r.Except, v6)
	}
	ports := mergePorts(r.Ports)
	var out []nftables.SetElement
	for _, c := range clients {
		for _, d := range dests {
			for _, p := range ports {
				out = append(out, nftables.SetElement{
					Key:    staticKey(c.lo, d.lo, p.Proto, p.Lo, global),
					KeyEnd: staticKey(c.hi, d.hi, p.Proto, p.Hi, global),
				})
			}
		}
	}
	return out
}

// staticKey is a key as encodeKey lays it out: each field padded to a
// 4-byte register, the port big-endian.
func staticKey(client, dest netip.Addr, proto uint8, port uint16, global bool) []byte {
	b := make([]byte, 0, 2*16+8)
	if !global {
		b = appendAddr(b, client)
	}
	b = appendAddr(b, dest)
	b = append(b, proto, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, port)
	return append(b, 0, 0)
}

// prefixRanges returns the family's prefixes as ranges, without those
// another contains, in order.
func prefixRanges(ps []netip.Prefix, v6 bool) []addrRange {
	var out []addrRange
	for _, p := range unionOf(ps, v6) {
		out = append(out, addrRange{p.Addr(), lastAddr(p)})
	}
	return out
}

// subtract returns the family's addresses of ps that are in none of
// except, as disjoint ranges in order.
func subtract(ps, except []netip.Prefix, v6 bool) []addrRange {
	holes := unionOf(except, v6)
	var out []addrRange
	for _, p := range unionOf(ps, v6) {
		lo, hi := p.Addr(), lastAddr(p)
		for _, h := range holes {
			hlo, hhi := h.Addr(), lastAddr(h)
			if hhi.Less(lo) || hi.Less(hlo) {
				continue // disjoint (holes are nested in p or outside it)
			}
			if lo.Less(hlo) {
				out = append(out, addrRange{lo, hlo.Prev()})
			}
			if !hhi.Less(hi) {
				lo = netip.Addr{}
				break
			}
			lo = hhi.Next()
		}
		if lo.IsValid() {
			out = append(out, addrRange{lo, hi})
		}
	}
	return out
}

// unionOf returns the prefixes of one family, masked, sorted, without
// those another contains.
func unionOf(ps []netip.Prefix, v6 bool) []netip.Prefix {
	var fam []netip.Prefix
	for _, p := range ps {
		if p.IsValid() && p.Addr().Is6() == v6 {
			fam = append(fam, p.Masked())
		}
	}
	slices.SortFunc(fam, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	out := fam[:0]
	for _, p := range fam {
		if n := len(out); n > 0 && out[n-1].Overlaps(p) {
			continue
		}
		out = append(out, p)
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// mergePorts merges overlapping and adjacent ranges of the same protocol.
func mergePorts(in []policy.PortRange) []policy.PortRange {
	ps := slices.Clone(in)
	slices.SortFunc(ps, func(a, b policy.PortRange) int {
		if a.Proto != b.Proto {
			return int(a.Proto) - int(b.Proto)
		}
		return int(a.Lo) - int(b.Lo)
	})
	var out []policy.PortRange
	for _, p := range ps {
		if n := len(out); n > 0 && out[n-1].Proto == p.Proto && uint32(p.Lo) <= uint32(out[n-1].Hi)+1 {
			out[n-1].Hi = max(out[n-1].Hi, p.Hi)
			continue
		}
		out = append(out, p)
	}
	return out
}
