package dnsproxy

import "net/netip"

// internalPrefixes4 and internalPrefixes6 are the ranges netip's
// predicates do not cover that still reach into the device network or
// the gateway itself (apart by family: a lookup scans only its own).
var (
	internalPrefixes4 = []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/8"),     // "this network" (RFC 1122); 0.0.0.0 reaches the host itself
		netip.MustParsePrefix("100.64.0.0/10"), // shared address space, CGNAT (RFC 6598)
		netip.MustParsePrefix("192.0.0.0/24"),  // IETF protocol assignments (RFC 6890)
		netip.MustParsePrefix("198.18.0.0/15"), // benchmarking (RFC 2544), used as internal space (fake-IP DNS)
		netip.MustParsePrefix("240.0.0.0/4"),   // reserved, and the limited broadcast 255.255.255.255
	}
	internalPrefixes6 = []netip.Prefix{
		netip.MustParsePrefix("fec0::/10"),      // site-local, deprecated (RFC 3879) but still routed inside sites
		netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64 (RFC 8215)
		netip.MustParsePrefix("100::/64"),       // discard-only (RFC 6666)
		netip.MustParsePrefix("2001:2::/48"),    // benchmarking (RFC 5180)
	}
)

// Prefixes that embed an IPv4 address: what they reach is what the IPv4
// address is.
var (
	nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052
	sixToFour      = netip.MustParsePrefix("2002::/16")    // RFC 3056: 2002:AABB:CCDD::/48
	v4Compatible   = netip.MustParsePrefix("::/96")        // deprecated IPv4-compatible ::a.b.c.d
)

// isInternal reports whether an answer's address points into a private
// network, at the gateway or device itself, or nowhere routable: the
// addresses a public name has no business answering with (DNS rebinding
// turns such an answer into a way in to the device network). IPv4-mapped
// and IPv4-embedding IPv6 forms are judged by their IPv4 address.
func isInternal(a netip.Addr) bool {
	a = a.Unmap()
	if a.Is6() {
		if v4, ok := embeddedV4(a); ok {
			return isInternal(v4)
		}
	}
	if a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() ||
		a.IsMulticast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() {
		return true
	}
	prefixes := internalPrefixes4
	if a.Is6() {
		prefixes = internalPrefixes6
	}
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// embeddedV4 is the IPv4 address inside a NAT64, 6to4 or IPv4-compatible
// address.
func embeddedV4(a netip.Addr) (netip.Addr, bool) {
	b := a.As16()
	switch {
	case nat64WellKnown.Contains(a), v4Compatible.Contains(a) && a != netip.IPv6Unspecified() && a != netip.IPv6Loopback():
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

// withholdInternal removes the internal addresses from a walk and returns
// how many it removed; strip then takes them out of the reply.
func (w *Walked) withholdInternal() (withheld int) {
	kept := w.Addrs[:0]
	for _, a := range w.Addrs {
		if !isInternal(a) {
			kept = append(kept, a)
		}
	}
	withheld = len(w.Addrs) - len(kept)
	w.Addrs = kept
	return withheld
}
