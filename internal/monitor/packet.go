// Package monitor turns what fqdngate sees into explanations and events:
// it reads the packets the kernel dropped (NFLOG), attributes each to one
// reason from the ledger, keeps a bounded log of events, and remembers which
// names each client was refused, so that a bare blocked CDN address can be
// told as "prod.update.sphere.azure.net via … for 192.0.2.10, expired 42 s
// ago".
package monitor

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Packet is the part of a logged packet attribution needs.
type Packet struct {
	Src, Dst netip.Addr
	Proto    uint8 // unix.IPPROTO_TCP or IPPROTO_UDP; others carry no port
	Port     uint16
}

func (p Packet) String() string {
	switch p.Proto {
	case unix.IPPROTO_TCP:
		return fmt.Sprintf("%s → %s tcp/%d", p.Src, p.Dst, p.Port)
	case unix.IPPROTO_UDP:
		return fmt.Sprintf("%s → %s udp/%d", p.Src, p.Dst, p.Port)
	}
	return fmt.Sprintf("%s → %s proto %d", p.Src, p.Dst, p.Proto)
}

var errShort = errors.New("packet too short")

// DecodePacket reads source, destination, protocol and destination port
// from an IPv4 or IPv6 packet as NFLOG hands it over (network header
// first). The headers are parsed by golang.org/x/net; only the port, the
// two bytes after the source port, is read here.
func DecodePacket(b []byte) (Packet, error) {
	if len(b) < 1 {
		return Packet{}, errShort
	}
	var p Packet
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		h, err := ipv4.ParseHeader(b)
		if err != nil {
			return Packet{}, fmt.Errorf("ipv4: %w", err)
		}
		if h.Len < ipv4.HeaderLen || h.Len > len(b) {
			return Packet{}, errShort
		}
		src, ok1 := netip.AddrFromSlice(h.Src.To4())
		dst, ok2 := netip.AddrFromSlice(h.Dst.To4())
		if !ok1 || !ok2 {
			return Packet{}, errors.New("ipv4: bad addresses")
		}
		p = Packet{Src: src, Dst: dst, Proto: uint8(h.Protocol)}
		if h.FragOff == 0 {
			l4 = b[h.Len:]
		}
	case 6:
		h, err := ipv6.ParseHeader(b)
		if err != nil {
			return Packet{}, fmt.Errorf("ipv6: %w", err)
		}
		src, ok1 := netip.AddrFromSlice(h.Src)
		dst, ok2 := netip.AddrFromSlice(h.Dst)
		if !ok1 || !ok2 {
			return Packet{}, errors.New("ipv6: bad addresses")
		}
		// Extension headers are not followed: such a packet is reported
		// without a port.
		p = Packet{Src: src, Dst: dst, Proto: uint8(h.NextHeader)}
		l4 = b[ipv6.HeaderLen:]
	default:
		return Packet{}, fmt.Errorf("not an IP packet (version %d)", b[0]>>4)
	}
	if (p.Proto == unix.IPPROTO_TCP || p.Proto == unix.IPPROTO_UDP) && len(l4) >= 4 {
		p.Port = uint16(l4[2])<<8 | uint16(l4[3])
	}
	return p, nil
}
