package dnsproxy

import (
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// maxChain bounds CNAME chains; real CDN chains are 2 to 4 hops.
const maxChain = 16

// Walked is what an answer says about a queried name.
type Walked struct {
	// Name is the queried name, lower case.
	Name string
	// Chain is the CNAME targets from the query name, in order.
	Chain []string
	// Addrs are the A/AAAA addresses at the end of the chain and the
	// ipv4hint/ipv6hint addresses of HTTPS/SVCB records on it, unique.
	Addrs []netip.Addr
	// MinTTL is the lowest TTL of the records that led to the addresses.
	MinTTL uint32
}

// linearAddrs: up to this many addresses, Walk finds repeats by a scan
// of what it has; beyond, with a set. An answer has 2 to 8 addresses, and
// the two maps Walk made per answer were a third of its time.
const linearAddrs = 16

// Walk follows qname's CNAME chain through the answer section.
func Walk(qname string, answer []dns.RR) Walked {
	w := Walked{Name: strings.ToLower(qname)}
	// One allocation each for the chain and the addresses, not one per
	// doubling: room for every CNAME and address record there is.
	cnames, addrs := 0, 0
	for _, rr := range answer {
		switch rr.(type) {
		case *dns.CNAME:
			cnames++
		case *dns.A, *dns.AAAA:
			addrs++
		}
	}
	if cnames > 0 {
		w.Chain = make([]string, 0, min(cnames, maxChain))
	}
	if addrs > 0 {
		w.Addrs = make([]netip.Addr, 0, addrs)
	}
	cur := w.Name
	first := true
	lower := func(ttl uint32) {
		if first || ttl < w.MinTTL {
			w.MinTTL, first = ttl, false
		}
	}
	for range maxChain {
		next := ""
		for _, rr := range answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, cur) {
				next = strings.ToLower(c.Target)
				lower(c.Hdr.Ttl)
				break
			}
		}
		if next == "" || w.onChain(next) {
			break // end of chain, or a loop
		}
		w.Chain = append(w.Chain, next)
		cur = next
	}
	var seen map[netip.Addr]bool // once there are more than linearAddrs
	add := func(a netip.Addr, ttl uint32) {
		a = a.Unmap()
		switch {
		case !a.IsValid():
			return
		case seen != nil:
			if seen[a] {
				return
			}
			seen[a] = true
		case slices.Contains(w.Addrs, a):
			return
		case len(w.Addrs) == linearAddrs:
			seen = make(map[netip.Addr]bool, 2*linearAddrs)
			for _, x := range w.Addrs {
				seen[x] = true
			}
			seen[a] = true
		}
		w.Addrs = append(w.Addrs, a)
		lower(ttl)
	}
	for _, rr := range answer {
		h := rr.Header()
		if !w.onChainFold(h.Name) {
			continue
		}
		switch v := rr.(type) {
		case *dns.A:
			if a, ok := ipAddr(v.A); ok && strings.EqualFold(h.Name, cur) {
				add(a, h.Ttl)
			}
		case *dns.AAAA:
			if a, ok := ipAddr(v.AAAA); ok && strings.EqualFold(h.Name, cur) {
				add(a, h.Ttl)
			}
		case *dns.HTTPS:
			for _, a := range svcbHints(&v.SVCB) {
				add(a, h.Ttl)
			}
		case *dns.SVCB:
			for _, a := range svcbHints(v) {
				add(a, h.Ttl)
			}
		}
	}
	return w
}

// ipAddr converts an address from a record, unmapping ::ffff:a.b.c.d.
func ipAddr(ip net.IP) (netip.Addr, bool) {
	if v4 := ip.To4(); v4 != nil {
		return netip.AddrFromSlice(v4)
	}
	a, ok := netip.AddrFromSlice(ip.To16())
	return a.Unmap(), ok
}

func appendAddrs(out []netip.Addr, ips []net.IP) []netip.Addr {
	for _, ip := range ips {
		if a, ok := ipAddr(ip); ok {
			out = append(out, a)
		}
	}
	return out
}

// end is the name the chain ends at, which owns the A/AAAA records.
func (w Walked) end() string {
	if len(w.Chain) > 0 {
		return w.Chain[len(w.Chain)-1]
	}
	return w.Name
}

// onChain reports whether a lower-case name is the query name or one of
// its CNAME targets.
func (w Walked) onChain(name string) bool {
	return name == w.Name || slices.Contains(w.Chain, name)
}

// onChainFold is onChain for a name in any case, as records carry them.
func (w Walked) onChainFold(name string) bool {
	if strings.EqualFold(name, w.Name) {
		return true
	}
	for _, c := range w.Chain {
		if strings.EqualFold(name, c) {
			return true
		}
	}
	return false
}

func svcbHints(s *dns.SVCB) []netip.Addr {
	var out []netip.Addr
	for _, kv := range s.Value {
		switch h := kv.(type) {
		case *dns.SVCBIPv4Hint:
			out = appendAddrs(out, h.Hint)
		case *dns.SVCBIPv6Hint:
			out = appendAddrs(out, h.Hint)
		}
	}
	return out
}

// carriesAddress reports whether a record names an address a client could
// connect to.
func carriesAddress(rr dns.RR) bool {
	switch rr.(type) {
	case *dns.A, *dns.AAAA, *dns.HTTPS, *dns.SVCB:
		return true
	}
	return false
}

// KeepFamily narrows a walk to the addresses of one family (IPv4 when
// v4). A client-scoped element is keyed by the client's address, and a
// query tells only the address of the family it came over: an IPv6
// address learnt by an IPv4 client could not be enforced for it.
func (w *Walked) KeepFamily(v4 bool) (dropped int) {
	kept := w.Addrs[:0]
	for _, a := range w.Addrs {
		if a.Is4() == v4 {
			kept = append(kept, a)
		}
	}
	dropped = len(w.Addrs) - len(kept)
	w.Addrs = kept
	return dropped
}

// strip removes every address that the walk w does not hold: A/AAAA off
// the chain or of another family in the answer, such hints of HTTPS/SVCB
// records, and all address records in the additional section (glue for MX
// or SRV targets). A client must ask for those names itself, so that they
// pass the policy and the enforcer. m gets new sections and the records
// it edits are copies, so strip is safe on a message whose records are
// shared.
func strip(m *dns.Msg, w Walked) {
	learnt := func(a netip.Addr) bool { return slices.Contains(w.Addrs, a) }
	end := w.end()
	kept := make([]dns.RR, 0, len(m.Answer))
	for _, rr := range m.Answer {
		name := strings.ToLower(rr.Header().Name)
		switch v := rr.(type) {
		case *dns.A:
			if a, _ := ipAddr(v.A); name != end || !learnt(a) {
				continue
			}
		case *dns.AAAA:
			if a, _ := ipAddr(v.AAAA); name != end || !learnt(a) {
				continue
			}
		case *dns.HTTPS:
			if !w.onChain(name) {
				continue
			}
			c := dns.Copy(v).(*dns.HTTPS)
			keepHints(&c.SVCB, learnt)
			rr = c
		case *dns.SVCB:
			if !w.onChain(name) {
				continue
			}
			c := dns.Copy(v).(*dns.SVCB)
			keepHints(c, learnt)
			rr = c
		}
		kept = append(kept, rr)
	}
	m.Answer = kept
	extra := make([]dns.RR, 0, len(m.Extra))
	for _, rr := range m.Extra {
		if !carriesAddress(rr) {
			extra = append(extra, rr)
		}
	}
	m.Extra = extra
}

// keepHints removes hint addresses that were not learnt, and hint keys
// left empty.
func keepHints(s *dns.SVCB, learnt func(netip.Addr) bool) {
	values := s.Value[:0]
	for _, kv := range s.Value {
		switch h := kv.(type) {
		case *dns.SVCBIPv4Hint:
			h.Hint = slices.DeleteFunc(h.Hint, func(ip net.IP) bool {
				a, _ := ipAddr(ip)
				return !learnt(a)
			})
			if len(h.Hint) == 0 {
				continue
			}
		case *dns.SVCBIPv6Hint:
			h.Hint = slices.DeleteFunc(h.Hint, func(ip net.IP) bool {
				a, _ := ipAddr(ip)
				return !learnt(a)
			})
			if len(h.Hint) == 0 {
				continue
			}
		}
		values = append(values, kv)
	}
	s.Value = values
}
