package config

import (
	"fmt"
	"slices"
	"strings"
)

// DefaultVerifyTLSPorts and DefaultVerifyHTTPPorts are the TCP ports
// verified for every rule (DESIGN section 11): TLS on HTTPS, AMQPS,
// 8443 and MQTT over TLS; the Host header on HTTP.
var (
	DefaultVerifyTLSPorts  = []uint16{443, 5671, 8443, 8883}
	DefaultVerifyHTTPPorts = []uint16{80}
)

func checkTLSPorts(col *collector, rp path, r Rule) {
	for i, p := range r.TLSPorts {
		if p < 1 || p > 65535 {
			col.add(rp.with("tls_ports", i), "%d is not a TCP port (1..65535)", p)
		}
	}
}

// VerifyPorts are the TCP ports verified for rule r: the default ones
// and its tls_ports; none when r has verify: false.
func VerifyPorts(r Rule) []uint16 {
	if r.Verify != nil && !*r.Verify {
		return nil
	}
	out := slices.Concat(DefaultVerifyTLSPorts, DefaultVerifyHTTPPorts)
	for _, p := range r.TLSPorts {
		if p >= 1 && p <= 65535 && !slices.Contains(out, uint16(p)) {
			out = append(out, uint16(p))
		}
	}
	return out
}

func describeVerify(c *Config) string {
	if c.Enforcer.Verify == "off" {
		return "off"
	}
	var optOut, extra []string
	for _, g := range c.Clients {
		for _, r := range g.Rules {
			if r.Verify != nil && !*r.Verify {
				optOut = append(optOut, g.Name+"/"+r.Name)
			} else if len(r.TLSPorts) > 0 {
				extra = append(extra, fmt.Sprintf("%s/%s %v", g.Name, r.Name, r.TLSPorts))
			}
		}
	}
	s := fmt.Sprintf("%s: the TLS server name on tcp %v and the HTTP Host on tcp %v must be a name answered to the client for the address; udp/443 (QUIC) dropped in enforce",
		c.Enforcer.Verify, DefaultVerifyTLSPorts, DefaultVerifyHTTPPorts)
	if len(optOut) > 0 {
		s += "; not verified: " + strings.Join(optOut, ", ")
	}
	if len(extra) > 0 {
		s += "; more ports: " + strings.Join(extra, ", ")
	}
	return s
}
