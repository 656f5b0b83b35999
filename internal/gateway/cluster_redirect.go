package gateway

import (
	"log/slog"
	"net"
	"net/netip"

	"github.com/fqdngate/fqdngate/internal/config"
	"github.com/fqdngate/fqdngate/internal/dnsproxy"
)

// clusterRedirect turns the redirect targets of a cluster node into nft
// `redirect` (an unspecified address with the target's port, see
// enforce.Spec): the kernel sends the query to the primary address of the
// interface it arrived on, which the node always holds. A dnat to the
// first listen address would point the standby at the VIP it does not
// hold, and its clients' DNS to other servers would go nowhere. On hook
// output the host's own queries are redirected to loopback either way,
// so there the targets stay.
func clusterRedirect(v4, v6 netip.AddrPort, hook string) (netip.AddrPort, netip.AddrPort) {
	if hook != "forward" {
		return v4, v6
	}
	if v4.IsValid() {
		v4 = netip.AddrPortFrom(netip.IPv4Unspecified(), v4.Port())
	}
	if v6.IsValid() {
		v6 = netip.AddrPortFrom(netip.IPv6Unspecified(), v6.Port())
	}
	return v4, v6
}

// interfaceAddrs is the host's addresses; a variable for tests.
var interfaceAddrs = func() ([]netip.Addr, error) {
	ifas, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(ifas))
	for _, a := range ifas {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out, nil
}

// warnNoHeldListener warns, for each family the redirect serves, when no
// listen.dns address of it is one the host holds and none is unspecified:
// the redirect goes to an address of the host, where nothing would
// listen. Typically listen.dns lists only the VIP; it needs the node's
// own address next to it.
func warnNoHeldListener(dnsAddrs []netip.AddrPort, v4, v6 netip.AddrPort, held []netip.Addr, log *slog.Logger) {
	for _, fam := range []struct {
		target netip.AddrPort
		v6     bool
		name   string
	}{{v4, false, "IPv4"}, {v6, true, "IPv6"}} {
		if !fam.target.IsValid() {
			continue
		}
		ok := false
		var listed []string
		for _, a := range dnsAddrs {
			if a.Addr().Is6() != fam.v6 {
				continue
			}
			listed = append(listed, a.String())
			for _, h := range held {
				if a.Addr().IsUnspecified() || a.Addr() == h {
					ok = true
				}
			}
		}
		if !ok {
			log.Warn("cluster: no "+fam.name+" listen.dns address is one this host holds: clients' DNS to other servers is redirected to the address of the interface it arrives on, where nothing listens; list the node's own address next to the VIP",
				"listen", listed)
		}
	}
}

// clusterNode is the node answers are recorded as; "" outside a cluster.
func clusterNode(c *config.Config) string {
	if c.Cluster == nil {
		return ""
	}
	return c.Cluster.Node
}

// clusterListen is how a cluster node binds its DNS addresses: the VIP
// too, before keepalived gives it to the node.
func clusterListen(c *config.Config) []dnsproxy.ListenOption {
	if c.Cluster == nil {
		return nil
	}
	return []dnsproxy.ListenOption{dnsproxy.WithFreeBind()}
}
