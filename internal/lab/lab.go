package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// The CDN lab's address plan. Two gateways side by side share one fake
// internet: the classic FQDN firewall with its device, and fqdngate with
// its device.
//
//	classic device 192.0.2.10 ── 192.0.2.1 classic gw 198.51.100.1 (own resolver)
//	                                                 198.51.100.3 (corporate DNS) ──┐
//	                                                                                ├─ inet: DNS 198.51.100.53,
//	fqdngate device 192.0.2.138 ── 192.0.2.129 fqdngate gw 198.51.100.17 ───────────┘  CDN 203.0.113.0/24
//
// The fake CDN picks a geo pool by the resolver's last address byte
// (GeoOf): the classic firewall resolves from geo 1, its devices' resolver
// from geo 3, as a firewall and a device resolver in different places do.
var (
	ClassicGW      = netip.MustParseAddr("192.0.2.1")
	ClassicDevice  = netip.MustParseAddr("192.0.2.10")
	ClassicUplink  = netip.MustParseAddr("198.51.100.1")
	CorporateDNS   = netip.MustParseAddr("198.51.100.3")
	GateGW         = netip.MustParseAddr("192.0.2.129")
	GateDevice     = netip.MustParseAddr("192.0.2.138")
	GateUplink     = netip.MustParseAddr("198.51.100.17")
	UpstreamDNS    = netip.MustParseAddr("198.51.100.53")
	ClassicDevNet  = netip.MustParsePrefix("192.0.2.0/25")
	GateDevNet     = netip.MustParsePrefix("192.0.2.128/25")
	CDNNet         = netip.MustParsePrefix("203.0.113.0/24")
	CDNNet6        = netip.MustParsePrefix("2001:db8:cd::/64")
	classicInetEnd = "198.51.100.2"
	gateInetEnd    = "198.51.100.18"
)

// Lab is the CDN lab: namespaces, links, the fake internet's DNS and
// services. Gateways and devices are started on it by the scenario.
type Lab struct {
	Inet, ClassicGW, ClassicDev, GateGW, GateDev *NS
	DNS                                          *AuthDNS
	CA                                           *CA
	services                                     *Services
	stopDNS                                      func()
	all                                          []*NS
}

// Up builds the lab: five namespaces, their links, addresses and routes,
// the authoritative DNS for sites (answers live ttl) and the fake services.
// On error everything made so far is removed.
func Up(sites []Site, ttl time.Duration) (l *Lab, err error) {
	l = &Lab{}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.Close())
			l = nil
		}
	}()
	for _, p := range []struct {
		ns   **NS
		role string
	}{{&l.Inet, "inet"}, {&l.ClassicGW, "classic"}, {&l.ClassicDev, "cdev"}, {&l.GateGW, "gate"}, {&l.GateDev, "gdev"}} {
		ns, err := NewNS(strings.TrimPrefix(LabPrefix, Prefix) + p.role)
		if err != nil {
			return nil, err
		}
		*p.ns = ns
		l.all = append(l.all, ns)
	}
	steps := []struct {
		ns   *NS
		args []string
	}{
		{l.Inet, []string{"ip", "addr", "add", UpstreamDNS.String() + "/32", "dev", "lo"}},
		{l.Inet, []string{"ip", "route", "add", "local", CDNNet.String(), "dev", "lo"}},
		{l.Inet, []string{"ip", "-6", "route", "add", "local", CDNNet6.String(), "dev", "lo"}},
	}
	for _, side := range []struct {
		gw, dev                 *NS
		gwAddr, devAddr, uplink netip.Addr
		extra                   []netip.Addr
		inetEnd, inetLink       string
		devNet                  netip.Prefix
	}{
		{l.ClassicGW, l.ClassicDev, ClassicGW, ClassicDevice, ClassicUplink, []netip.Addr{CorporateDNS}, classicInetEnd, "c0", ClassicDevNet},
		{l.GateGW, l.GateDev, GateGW, GateDevice, GateUplink, nil, gateInetEnd, "g0", GateDevNet},
	} {
		if err := Veth(side.gw, "dev0", side.dev, "eth0"); err != nil {
			return nil, err
		}
		if err := Veth(side.gw, "up0", l.Inet, side.inetLink); err != nil {
			return nil, err
		}
		bits := side.devNet.Bits()
		steps = append(steps, []struct {
			ns   *NS
			args []string
		}{
			{side.gw, []string{"ip", "addr", "add", fmt.Sprintf("%s/%d", side.gwAddr, bits), "dev", "dev0"}},
			{side.gw, []string{"ip", "addr", "add", side.uplink.String() + "/28", "dev", "up0"}},
			{side.gw, []string{"ip", "route", "add", "default", "via", side.inetEnd}},
			{side.gw, []string{"sysctl", "-qw", "net.ipv4.ip_forward=1"}},
			{side.dev, []string{"ip", "addr", "add", fmt.Sprintf("%s/%d", side.devAddr, bits), "dev", "eth0"}},
			{side.dev, []string{"ip", "route", "add", "default", "via", side.gwAddr.String()}},
			{l.Inet, []string{"ip", "addr", "add", side.inetEnd + "/28", "dev", side.inetLink}},
			{l.Inet, []string{"ip", "route", "add", side.devNet.String(), "via", side.uplink.String()}},
		}...)
		for _, a := range side.extra {
			steps = append(steps, struct {
				ns   *NS
				args []string
			}{side.gw, []string{"ip", "addr", "add", a.String() + "/28", "dev", "up0"}})
		}
	}
	for _, s := range steps {
		if _, err := s.ns.Run(s.args[0], s.args[1:]...); err != nil {
			return nil, fmt.Errorf("lab: %w", err)
		}
	}
	l.DNS = NewAuthDNS(sites, ttl)
	if l.stopDNS, err = l.DNS.Serve(l.Inet, netip.AddrPortFrom(UpstreamDNS, 53).String()); err != nil {
		return nil, err
	}
	if l.CA, err = NewCA("fqdngate lab CA"); err != nil {
		return nil, err
	}
	if l.services, err = StartServices(l.Inet, l.CA); err != nil {
		return nil, err
	}
	return l, nil
}

// Close stops the lab's servers and deletes its namespaces, and with them
// every link, address, route and nftables table in them.
func (l *Lab) Close() error {
	if l.services != nil {
		l.services.Stop()
		l.services = nil
	}
	if l.stopDNS != nil {
		l.stopDNS()
		l.stopDNS = nil
	}
	var errs []error
	for _, ns := range l.all {
		if err := ns.Delete(); err != nil {
			errs = append(errs, err)
		}
	}
	l.all = nil
	return errors.Join(errs...)
}
