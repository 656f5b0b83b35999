package config

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// LocalDNS is where `fqdngate run` without a configuration serves.
const LocalDNS = "127.0.0.1:5353"

// Local is the configuration of `fqdngate run` without --config: observe
// mode for this host's own queries on 127.0.0.1:5353, forwarding to
// upstreams, nothing installed in the kernel. Every name is recorded as a
// would-deny, which is the starting point for writing a policy.
func Local(upstreams []string) (*Config, error) {
	quoted := make([]string, len(upstreams))
	for i, u := range upstreams {
		quoted[i] = fmt.Sprintf("%q", u)
	}
	doc := fmt.Sprintf(`mode: observe
listen: {dns: [%q]}
upstreams: [%s]
enforcer: {backend: none}
state_dir: ""
clients:
  - name: this-host
    cidrs: ["127.0.0.0/8", "::1/128"]
`, LocalDNS, strings.Join(quoted, ", "))
	return Parse("(built-in defaults)", []byte(doc))
}

// SystemUpstreams reads the nameservers of a resolv.conf. Loopback
// nameservers on port 53 are kept; fqdngate itself is on 5353 then.
func SystemUpstreams(resolvConf string) ([]string, error) {
	cc, err := dns.ClientConfigFromFile(resolvConf)
	if err != nil {
		return nil, fmt.Errorf("read upstreams from %s: %w", resolvConf, err)
	}
	var out []string
	for _, s := range cc.Servers {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.AddrPortFrom(a, 53).String())
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s names no nameserver; give a --config with upstreams", resolvConf)
	}
	return out, nil
}
