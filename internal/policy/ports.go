package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// IP protocol numbers used in set keys.
const (
	ProtoTCP uint8 = 6
	ProtoUDP uint8 = 17
)

// PortRange is a transport protocol and an inclusive port range. A single
// port has Lo == Hi.
type PortRange struct {
	Proto uint8
	Lo    uint16
	Hi    uint16
}

// IsRange reports whether the range covers more than one port.
func (p PortRange) IsRange() bool { return p.Lo != p.Hi }

// String renders the range the way the configuration writes it.
func (p PortRange) String() string {
	proto := ProtoName(p.Proto)
	if p.Lo == p.Hi {
		return fmt.Sprintf("%s/%d", proto, p.Lo)
	}
	return fmt.Sprintf("%s/%d-%d", proto, p.Lo, p.Hi)
}

// Contains reports whether proto/port falls in the range.
func (p PortRange) Contains(proto uint8, port uint16) bool {
	return p.Proto == proto && port >= p.Lo && port <= p.Hi
}

// ProtoName names a protocol number the way the configuration does.
func ProtoName(proto uint8) string {
	switch proto {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	}
	return strconv.Itoa(int(proto))
}

// ParsePort parses "tcp/443", "udp/123" or "tcp/8000-8100".
func ParsePort(s string) (PortRange, error) {
	protoStr, portStr, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return PortRange{}, fmt.Errorf("port %q: want PROTO/PORT or PROTO/LOW-HIGH, e.g. tcp/443", s)
	}
	var pr PortRange
	switch strings.ToLower(protoStr) {
	case "tcp":
		pr.Proto = ProtoTCP
	case "udp":
		pr.Proto = ProtoUDP
	default:
		return PortRange{}, fmt.Errorf("port %q: protocol %q is not tcp or udp", s, protoStr)
	}
	loStr, hiStr, isRange := strings.Cut(portStr, "-")
	lo, err := parsePortNumber(loStr)
	if err != nil {
		return PortRange{}, fmt.Errorf("port %q: %w", s, err)
	}
	hi := lo
	if isRange {
		if hi, err = parsePortNumber(hiStr); err != nil {
			return PortRange{}, fmt.Errorf("port %q: %w", s, err)
		}
		if hi < lo {
			return PortRange{}, fmt.Errorf("port %q: range end %d is below its start %d", s, hi, lo)
		}
	}
	pr.Lo, pr.Hi = lo, hi
	return pr, nil
}

func parsePortNumber(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port number from 1 to 65535", s)
	}
	return uint16(n), nil
}

// MergePorts returns the union of port lists, without duplicates, in a
// stable order (the order of first appearance).
func MergePorts(lists ...[]PortRange) []PortRange {
	var out []PortRange
	for _, l := range lists {
		for _, p := range l {
			// Rules name a handful of ports: a scan beats a map.
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}
