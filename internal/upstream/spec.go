package upstream

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Default ports of the two transports.
const (
	DefaultPort    = 53
	DefaultTLSPort = 853
)

// maxServerName bounds the TLS server name of a spec (a DNS name's
// longest presentation form).
const maxServerName = 253

// Spec is one upstream as the configuration names it.
type Spec struct {
	// Addr is where the upstream listens; its address is unmapped
	// (::ffff:a.b.c.d is a.b.c.d) and has no zone.
	Addr netip.AddrPort
	// TLS selects DNS over TLS (RFC 7858) instead of UDP and TCP.
	TLS bool
	// ServerName is the name the TLS upstream's certificate must carry;
	// set exactly when TLS is.
	ServerName string
}

// String is the spec in the form ParseSpec reads: IP:port, [v6]:port or
// tls://IP:port#name. It is also the upstream's metrics label.
func (s Spec) String() string {
	if s.TLS {
		return "tls://" + s.Addr.String() + "#" + s.ServerName
	}
	return s.Addr.String()
}

// ParseSpec reads an upstream entry: IP, IP:port, [v6]:port (port 53 if
// omitted) or tls://IP[:port]#servername (port 853 if omitted). Names are
// not accepted as addresses: resolving them would need a resolver. The
// TLS server name is required, because without it the certificate
// cannot be verified.
func ParseSpec(s string) (Spec, error) {
	rest, isTLS := strings.CutPrefix(s, "tls://")
	if !isTLS && strings.Contains(s, "://") {
		return Spec{}, fmt.Errorf("%q: the only scheme is tls:// (DNS over TLS); plain DNS is written without one", s)
	}
	var sp Spec
	sp.TLS = isTLS
	port := uint16(DefaultPort)
	if isTLS {
		var name string
		var ok bool
		rest, name, ok = strings.Cut(rest, "#")
		if !ok || name == "" {
			return Spec{}, fmt.Errorf("%q: a tls:// upstream needs the name its certificate carries, e.g. tls://198.51.100.53:853#dns.example.net", s)
		}
		if err := checkServerName(name); err != nil {
			return Spec{}, fmt.Errorf("%q: server name: %w", s, err)
		}
		sp.ServerName = strings.ToLower(strings.TrimSuffix(name, "."))
		port = DefaultTLSPort
	} else if strings.Contains(rest, "#") {
		return Spec{}, fmt.Errorf("%q: a server name (#name) is only for tls:// upstreams", s)
	}
	ap, err := parseAddrPort(rest, port)
	if err != nil {
		return Spec{}, fmt.Errorf("%q %w", s, err)
	}
	sp.Addr = ap
	return sp, nil
}

// The errors of parseAddrPort complete a sentence that starts with the
// entry: "x" is not an IP address.
var errNotIP = errors.New("is not an IP address (names are not accepted: resolving them would need a resolver)")

func parseAddrPort(s string, defaultPort uint16) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return netip.AddrPort{}, errors.New("is a zoned address: not supported")
		}
		return netip.AddrPortFrom(a.Unmap(), defaultPort), nil
	}
	host, portStr, ok := splitHostPort(s)
	if !ok && !strings.Contains(s, ":") {
		return netip.AddrPort{}, errNotIP
	}
	if !ok {
		return netip.AddrPort{}, errors.New("is not an IP address with an optional port (e.g. 192.0.2.1, 192.0.2.1:53 or [2001:db8::1]:53)")
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, errNotIP
	}
	if a.Zone() != "" {
		return netip.AddrPort{}, errors.New("is a zoned address: not supported")
	}
	p, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || p == 0 {
		return netip.AddrPort{}, fmt.Errorf("has port %q, not a number in 1..65535", portStr)
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(p)), nil
}

// splitHostPort splits IPv4:port and [IPv6]:port; a bare IPv6 address
// with a port glued on (2001:db8::1:53) is ambiguous and rejected.
func splitHostPort(s string) (host, port string, ok bool) {
	if rest, found := strings.CutPrefix(s, "["); found {
		h, p, found := strings.Cut(rest, "]:")
		if !found || !strings.Contains(h, ":") {
			return "", "", false
		}
		return h, p, true
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 || strings.Count(s, ":") != 1 {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

// checkServerName accepts a DNS host name: labels of letters, digits and
// hyphens, 1 to 63 bytes each, at most 253 bytes in all.
func checkServerName(name string) error {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > maxServerName {
		return fmt.Errorf("%q is not a host name", name)
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return fmt.Errorf("%q is an address; give the name the certificate is issued for", name)
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%q is not a host name", name)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%q is not a host name", name)
			}
		}
	}
	return nil
}

// LoadCAFile reads PEM certificates that TLS upstreams are verified
// against instead of the system roots.
func LoadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
