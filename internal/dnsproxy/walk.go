package dnsproxy

import (
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// maxChain bounds CNAME chains; real CDN chains are 2 to 4 hops.
const maxChain = 16

// Walked is what an answer says about a queried name.
type Walked struct {
	// Chain is the CNAME targets from the query name, in order.
	Chain []string
	// Addrs are the A/AAAA addresses at the end of the chain and the
	// ipv4hint/ipv6hint addresses of HTTPS/SVCB records on it, unique.
	Addrs []netip.Addr
	// MinTTL is the lowest TTL of the records that led to the addresses.
	MinTTL uint32
}

// Walk follows qname's CNAME chain through the answer section.
func Walk(qname string, answer []dns.RR) Walked {
	var w Walked
	onChain := map[string]bool{strings.ToLower(qname): true}
	cur := strings.ToLower(qname)
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
		if next == "" || onChain[next] {
			break // end of chain, or a loop
		}
		onChain[next] = true
		w.Chain = append(w.Chain, next)
		cur = next
	}
	seen := make(map[netip.Addr]bool)
	add := func(a netip.Addr, ttl uint32) {
		a = a.Unmap()
		if !a.IsValid() || seen[a] {
			return
		}
		seen[a] = true
		w.Addrs = append(w.Addrs, a)
		lower(ttl)
	}
	for _, rr := range answer {
		h := rr.Header()
		if !onChain[strings.ToLower(h.Name)] {
			continue
		}
		switch v := rr.(type) {
		case *dns.A:
			if strings.EqualFold(h.Name, cur) {
				a, _ := netip.AddrFromSlice(v.A.To4())
				add(a, h.Ttl)
			}
		case *dns.AAAA:
			if strings.EqualFold(h.Name, cur) {
				a, _ := netip.AddrFromSlice(v.AAAA.To16())
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

func svcbHints(s *dns.SVCB) []netip.Addr {
	var out []netip.Addr
	for _, kv := range s.Value {
		switch h := kv.(type) {
		case *dns.SVCBIPv4Hint:
			for _, ip := range h.Hint {
				if a, ok := netip.AddrFromSlice(ip.To4()); ok {
					out = append(out, a)
				}
			}
		case *dns.SVCBIPv6Hint:
			for _, ip := range h.Hint {
				if a, ok := netip.AddrFromSlice(ip.To16()); ok {
					out = append(out, a)
				}
			}
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

// strip removes every address-carrying record that Walk did not learn:
// A/AAAA off the chain in the answer, and all of them in the additional
// section (glue for MX or SRV targets). A client must ask for those names
// itself, so that they pass the policy and the enforcer.
func strip(m *dns.Msg, qname string, w Walked) {
	onChain := map[string]bool{strings.ToLower(qname): true}
	for _, c := range w.Chain {
		onChain[c] = true
	}
	end := strings.ToLower(qname)
	if len(w.Chain) > 0 {
		end = w.Chain[len(w.Chain)-1]
	}
	kept := m.Answer[:0]
	for _, rr := range m.Answer {
		name := strings.ToLower(rr.Header().Name)
		switch rr.(type) {
		case *dns.A, *dns.AAAA:
			if name != end {
				continue
			}
		case *dns.HTTPS, *dns.SVCB:
			if !onChain[name] {
				continue
			}
		}
		kept = append(kept, rr)
	}
	m.Answer = kept
	extra := m.Extra[:0]
	for _, rr := range m.Extra {
		if !carriesAddress(rr) {
			extra = append(extra, rr)
		}
	}
	m.Extra = extra
}
