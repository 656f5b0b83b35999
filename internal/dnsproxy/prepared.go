package dnsproxy

import (
	"encoding/binary"
	"net/netip"

	"github.com/miekg/dns"
)

// A prepared reply is a client's reply as fqdngate sent it, kept with the
// cached answer it came from for the next client of the same kind. A hit
// copies it and sets the ID, the RD bit, the question's letter case and
// the TTLs, instead of unpacking the cached answer, walking and stripping
// it and packing the reply again: the steps that only repeat what the
// last client of that kind was told. Policy, install and record still run
// for every query, with the walk the reply was made from.
type prepared struct {
	wire []byte
	// qEnd is where the question section ends.
	qEnd int
	// ttlAt are the offsets of the TTLs of the answer and authority
	// records (the ones the cache ages), ttl their values in wire.
	ttlAt []uint16
	ttl   []uint32
	// age is how long the answer had been cached when wire was made.
	age uint32
	// walked is what the reply tells, as the handler installed it.
	walked Walked
	// kind is the clients it suits.
	kind variant
}

// A variant is the kind of client a prepared reply suits: what the reply
// depends on besides the cached answer.
type variant uint8

const (
	variantV4      variant = 1 << iota // asked over IPv4 (client scope keeps that family)
	variantAllowed                     // allowed, not an observe-mode would-deny
	variantEDNS                        // sent EDNS, so the reply carries fqdngate's OPT
)

func variantOf(client netip.Addr, allowed bool, req *dns.Msg) variant {
	var v variant
	if client.Is4() {
		v |= variantV4
	}
	if allowed {
		v |= variantAllowed
	}
	if req.IsEdns0() != nil {
		v |= variantEDNS
	}
	return v
}

// prepare indexes a packed reply; it returns nil when the reply cannot be
// replayed (a malformed one cannot happen: fqdngate packed it).
func prepare(wire []byte, age uint32, w Walked, kind variant) *prepared {
	if len(wire) < dnsHeaderLen || binary.BigEndian.Uint16(wire[4:]) != 1 {
		return nil
	}
	p := &prepared{wire: wire, age: age, walked: w, kind: kind}
	_, off, err := dns.UnpackDomainName(wire, dnsHeaderLen)
	if err != nil || off+4 > len(wire) {
		return nil
	}
	p.qEnd = off + 4
	off = p.qEnd
	aged := int(binary.BigEndian.Uint16(wire[6:])) + int(binary.BigEndian.Uint16(wire[8:]))
	records := aged + int(binary.BigEndian.Uint16(wire[10:]))
	for i := range records {
		_, nameEnd, err := dns.UnpackDomainName(wire, off)
		if err != nil || nameEnd+8 > len(wire) || nameEnd+8 > 1<<16 {
			return nil
		}
		_, next, err := dns.UnpackRR(wire, off)
		if err != nil {
			return nil
		}
		if i < aged {
			p.ttlAt = append(p.ttlAt, uint16(nameEnd+4))
			p.ttl = append(p.ttl, binary.BigEndian.Uint32(wire[nameEnd+4:]))
		}
		off = next
	}
	if off != len(wire) {
		return nil
	}
	return p
}

// replay writes into buf the reply to req from p, for an answer cached age
// seconds ago, and returns it with the walk it tells, its TTLs lowered
// like the records'. ok is false when the question does not fit (it
// always does: the cache key is the name without case).
func (p *prepared) replay(buf []byte, req *dns.Msg, age uint32) (out []byte, w Walked, ok bool) {
	if age < p.age {
		return nil, Walked{}, false
	}
	out = append(buf[:0], p.wire...)
	binary.BigEndian.PutUint16(out, req.Id)
	out[2] &^= 1 // RD: the client's
	if req.RecursionDesired {
		out[2] |= 1
	}
	// The client's letter case (0x20): the name has the cached length.
	off, err := dns.PackDomainName(req.Question[0].Name, out, dnsHeaderLen, nil, false)
	if err != nil || off+4 != p.qEnd {
		return nil, Walked{}, false
	}
	elapsed := age - p.age
	for i, at := range p.ttlAt {
		binary.BigEndian.PutUint32(out[at:], p.ttl[i]-min(p.ttl[i], elapsed))
	}
	w = p.walked
	w.MinTTL -= min(w.MinTTL, elapsed)
	return out, w, true
}
