package scenario

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/fqdngate/fqdngate/internal/lab"
)

// HADevice is the HA lab's device: it uses the LAN VIP as its gateway and
// DNS server, and never learns which node is behind it.
var HADevice = netip.MustParseAddr("192.0.2.10")

// HAEnv is the HA lab (fqdnlab up --ha) with the fake internet, both
// gateways (conntrackd, fqdngate with its cluster, keepalived) and one
// device.
type HAEnv struct {
	HA       *lab.HA
	Device   *lab.NS
	CA       *lab.CA
	DNS      *lab.AuthDNS
	stopDNS  func()
	services *lab.Services
}

// haGateConfig is fqdngate's configuration on an HA node: the catalog
// profiles, the lab's listen and cluster sections.
func haGateConfig(n *lab.HANode) string {
	return fmt.Sprintf(`mode: enforce
%supstreams: ["%s"]
params:
  iot_hub: %s
enforcer:
  min_ttl: 0s
  grace: 5s
  hold: 2s
clients:
  - name: sphere-devices
    cidrs: ["%s"]
    profiles: [%s]
state_dir: %s/state
log:
  level: info
%s`, n.ListenYAML(), lab.UpstreamDNS, Hub, lab.HALanNet, strings.Join(Profiles, ", "), n.Dir, n.ClusterYAML())
}

// StartHA builds the HA lab and starts everything in it; gw1 (the higher
// VRRP priority) holds the VIPs when it returns. Close undoes all of it.
func StartHA(ctx context.Context, opt Options) (env *HAEnv, err error) {
	progress := func(format string, args ...any) {
		if opt.Progress != nil {
			fmt.Fprintf(opt.Progress, format+"\n", args...)
		}
	}
	if opt.Fqdngate == "" {
		return nil, errors.New("scenario: no fqdngate binary given")
	}
	h, err := lab.UpHA(lab.HAOptions{Role: strings.TrimPrefix(lab.LabPrefix, lab.Prefix)})
	if err != nil {
		return nil, err
	}
	env = &HAEnv{HA: h}
	defer func() {
		if err != nil {
			err = errors.Join(err, env.Close())
			env = nil
		}
	}()
	env.DNS = lab.NewAuthDNS(lab.SphereSites(Hub), opt.TTL)
	if env.stopDNS, err = env.DNS.Serve(h.Inet, netip.AddrPortFrom(lab.UpstreamDNS, 53).String()); err != nil {
		return env, err
	}
	if env.CA, err = lab.NewCA("fqdnlab HA CA"); err != nil {
		return env, err
	}
	if env.services, err = lab.StartServices(h.Inet, env.CA); err != nil {
		return env, err
	}
	progress("HA lab up: fake internet (DNS %s, CDN %s), LAN VIP %s, WAN VIP %s, sync link %s", lab.UpstreamDNS, lab.CDNNet, lab.HALanVIP, lab.HAWanVIP, lab.HASyncNet)
	for _, n := range h.Nodes {
		if err := n.StartConntrackd(); err != nil {
			return env, err
		}
		if err := n.StartGateway(ctx, opt.Fqdngate, haGateConfig(n), 30*time.Second); err != nil {
			return env, err
		}
		if err := n.StartKeepalived(); err != nil {
			return env, err
		}
		progress("%s up: conntrackd, fqdngate (cluster %s, node %s), keepalived (priority %d)", n.Name, lab.HASite, n.Name, n.Priority)
	}
	if env.Device, err = h.AddDevice(strings.TrimPrefix(lab.LabPrefix, lab.Prefix)+"dev", HADevice, lab.HALanVIP); err != nil {
		return env, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for !h.Nodes[0].HoldsVIP() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return env, fmt.Errorf("gw1 did not take the VIP within 15s:\n%s", h.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	progress("gw1 holds the VIPs")
	return env, nil
}

// Close stops every daemon and removes the lab.
func (e *HAEnv) Close() error {
	var errs []error
	if e.services != nil {
		e.services.Stop()
	}
	if e.stopDNS != nil {
		e.stopDNS()
	}
	errs = append(errs, e.HA.Close())
	return errors.Join(errs...)
}
