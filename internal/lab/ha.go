package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fqdngate/fqdngate/packaging"
)

// The HA lab's address plan: two gateways on one device network and one
// uplink network, each side with a VIP that keepalived moves (one VRRP
// sync group), and a sync link between the gateways for conntrackd and
// the fqdngate cluster.
//
//	          devices 192.0.2.10.. (gateway: the VIP, or one node's own address)
//	                │ lan switch (bridge)
//	    ┌───────────┴───────────┐      LAN VIP 192.0.2.1/25
//	gw1 192.0.2.2          gw2 192.0.2.3
//	    │ 192.0.2.249 ── sync ── 192.0.2.250 │
//	gw1 198.51.100.2       gw2 198.51.100.3
//	    └───────────┬───────────┘      WAN VIP 198.51.100.1/24
//	                │ inet (bridge, 198.51.100.254): DNS 198.51.100.53, CDN 203.0.113.0/24
//
// The fake internet sends the device network to the WAN VIP, and a device
// that uses one node's own address to that node's own uplink address, so
// that every flow's replies come back through the node that forwards it.
var (
	HALanVIP   = netip.MustParseAddr("192.0.2.1")
	HALanNet   = netip.MustParsePrefix("192.0.2.0/25")
	HAWanVIP   = netip.MustParseAddr("198.51.100.1")
	HAWanNet   = netip.MustParsePrefix("198.51.100.0/24")
	HAInetAddr = netip.MustParseAddr("198.51.100.254")
	HASyncNet  = netip.MustParsePrefix("192.0.2.248/29")
)

// haNodes is the per-node part of the plan: gw1 is the primary (the
// higher VRRP priority).
var haNodes = [2]struct {
	name            string
	lan, wan, sync_ netip.Addr
	priority        int
}{
	{"gw1", netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("192.0.2.249"), 150},
	{"gw2", netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("198.51.100.3"), netip.MustParseAddr("192.0.2.250"), 100},
}

// The gateways' interface names and fqdngate's API inside each gateway.
const (
	HALanIf  = "lan0"
	HAWanIf  = "wan0"
	HASyncIf = "sync0"
	HAAPI    = "127.0.0.1:9053"
)

// HANode is one gateway of the HA lab and the daemons in it.
type HANode struct {
	Name                       string
	NS                         *NS
	LanAddr, WanAddr, SyncAddr netip.Addr
	Priority                   int
	// Dir holds the node's rendered configurations, pid files, control
	// socket, lock and logs.
	Dir string
	// Keepalived, Conntrackd and Gate are the running daemons; nil when
	// not running.
	Keepalived, Conntrackd, Gate *Proc
	peer                         *HANode
	tokenFile                    string
}

// HA is the HA lab: the fake internet, the device network's switch, two
// gateways with conntrackd and keepalived from the distribution, and the
// devices added to it.
type HA struct {
	Inet, LAN *NS
	Nodes     [2]*HANode
	Dir       string
	devices   []*NS
	all       []*NS
	// ports numbers the devices' switch ports.
	ports int
}

// HAOptions set up an HA lab.
type HAOptions struct {
	// Role prefixes the namespaces' roles (LabPrefix's "lab-" for
	// fqdnlab, so that `fqdnlab down` finds them; empty for tests).
	Role string
	// Dir is where the nodes' files go; empty means a new temporary
	// directory, removed by Close.
	Dir string
}

// UpHA builds the HA lab's namespaces, links, addresses and routes and
// renders each node's keepalived.conf, conntrackd.conf and notify script
// from the packaging files. No daemon runs yet (StartConntrackd,
// StartKeepalived, StartGateway). On error everything made is removed.
func UpHA(opt HAOptions) (h *HA, err error) {
	h = &HA{Dir: opt.Dir}
	defer func() {
		if err != nil {
			err = errors.Join(err, h.Close())
			h = nil
		}
	}()
	if h.Dir == "" {
		if h.Dir, err = os.MkdirTemp("", Prefix+opt.Role+"ha-"); err != nil {
			return nil, err
		}
	}
	newNS := func(role string) (*NS, error) {
		ns, err := NewNS(opt.Role + role)
		if err == nil {
			h.all = append(h.all, ns)
		}
		return ns, err
	}
	if h.Inet, err = newNS("inet"); err != nil {
		return nil, err
	}
	if h.LAN, err = newNS("lan"); err != nil {
		return nil, err
	}
	var steps [][]string // each: namespace index in h.all, then the command
	add := func(ns *NS, args ...string) { steps = append(steps, append([]string{ns.Name}, args...)) }
	// Both switches are bridges without multicast snooping, so VRRP
	// adverts reach every port.
	add(h.LAN, "ip", "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	add(h.LAN, "ip", "link", "set", "br0", "up")
	add(h.Inet, "ip", "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	add(h.Inet, "ip", "link", "set", "br0", "up")
	add(h.Inet, "ip", "addr", "add", HAInetAddr.String()+"/24", "dev", "br0")
	add(h.Inet, "ip", "addr", "add", UpstreamDNS.String()+"/32", "dev", "lo")
	add(h.Inet, "ip", "route", "add", "local", CDNNet.String(), "dev", "lo")
	add(h.Inet, "ip", "route", "add", HALanNet.String(), "via", HAWanVIP.String())
	if err := runSteps(h.all, steps); err != nil {
		return nil, err
	}
	steps = nil
	for i, p := range haNodes {
		ns, err := newNS(p.name)
		if err != nil {
			return nil, err
		}
		n := &HANode{Name: p.name, NS: ns, LanAddr: p.lan, WanAddr: p.wan, SyncAddr: p.sync_, Priority: p.priority,
			Dir: filepath.Join(h.Dir, p.name)}
		h.Nodes[i] = n
		if err := os.MkdirAll(n.Dir, 0o700); err != nil {
			return nil, err
		}
		if err := Veth(ns, HALanIf, h.LAN, p.name); err != nil {
			return nil, err
		}
		if err := Veth(ns, HAWanIf, h.Inet, p.name); err != nil {
			return nil, err
		}
		add(h.LAN, "ip", "link", "set", p.name, "master", "br0")
		add(h.Inet, "ip", "link", "set", p.name, "master", "br0")
		add(ns, "ip", "addr", "add", fmt.Sprintf("%s/%d", p.lan, HALanNet.Bits()), "dev", HALanIf)
		add(ns, "ip", "addr", "add", fmt.Sprintf("%s/%d", p.wan, HAWanNet.Bits()), "dev", HAWanIf)
		add(ns, "ip", "route", "add", "default", "via", HAInetAddr.String())
		add(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	}
	h.Nodes[0].peer, h.Nodes[1].peer = h.Nodes[1], h.Nodes[0]
	if err := Veth(h.Nodes[0].NS, HASyncIf, h.Nodes[1].NS, HASyncIf); err != nil {
		return nil, err
	}
	for _, n := range h.Nodes {
		add(n.NS, "ip", "addr", "add", fmt.Sprintf("%s/%d", n.SyncAddr, HASyncNet.Bits()), "dev", HASyncIf)
	}
	if err := runSteps(h.all, steps); err != nil {
		return nil, err
	}
	token := filepath.Join(h.Dir, "nats.token")
	if err := os.WriteFile(token, []byte(HAToken+"\n"), 0o600); err != nil {
		return nil, err
	}
	for _, n := range h.Nodes {
		n.tokenFile = token
		if err := n.render(); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// HASite is the HA lab's cluster name and HAToken the nodes' shared NATS
// secret (a lab has nothing to protect).
const (
	HASite  = "lab"
	HAToken = "fqdnlab-ha-shared-token"
)

// ListenYAML is the node's listen section: DNS on its own LAN address and
// on the LAN VIP (bound on both nodes with the cluster's free bind, so the
// node that does not hold the VIP answers the moment it arrives), the API
// on loopback.
func (n *HANode) ListenYAML() string {
	return fmt.Sprintf("listen:\n  dns: [\"%s:53\", \"%s:53\"]\n  api: \"%s\"\n", n.LanAddr, HALanVIP, HAAPI)
}

// ClusterYAML is the node's cluster section: the embedded NATS server on
// the sync link, routed to the other node.
func (n *HANode) ClusterYAML() string {
	return fmt.Sprintf(`cluster:
  name: %s
  node: %s
  nats: embedded
  listen: %s
  routes: ["nats://%s"]
  token_file: %s
`, HASite, n.Name, n.SyncAddr, n.peer.SyncAddr, n.tokenFile)
}

func runSteps(all []*NS, steps [][]string) error {
	byName := make(map[string]*NS, len(all))
	for _, ns := range all {
		byName[ns.Name] = ns
	}
	for _, s := range steps {
		if _, err := byName[s[0]].Run(s[1], s[2:]...); err != nil {
			return fmt.Errorf("ha lab: %w", err)
		}
	}
	return nil
}

// The node's files in Dir.
func (n *HANode) path(name string) string { return filepath.Join(n.Dir, name) }

// render writes the node's keepalived.conf, conntrackd.conf and notify
// script: the packaging files with this node's names and addresses.
func (n *HANode) render() error {
	files := []struct {
		name string
		mode os.FileMode
		vars map[string]string
	}{
		{packaging.Keepalived, 0o600, map[string]string{
			"NODE": n.Name, "PRIORITY": fmt.Sprint(n.Priority),
			"LAN_IF": HALanIf, "LAN_VIP": fmt.Sprintf("%s/%d", HALanVIP, HALanNet.Bits()),
			"WAN_IF": HAWanIf, "WAN_VIP": fmt.Sprintf("%s/%d", HAWanVIP, HAWanNet.Bits()),
			"API": "http://" + HAAPI, "NOTIFY": n.path(packaging.Notify), "CONNTRACKD_CONF": n.path(packaging.Conntrackd),
		}},
		{packaging.Conntrackd, 0o600, map[string]string{
			"SYNC_IF": HASyncIf, "SYNC_ADDR": n.SyncAddr.String(), "PEER_SYNC_ADDR": n.peer.SyncAddr.String(),
			"RUN_DIR": n.Dir, "LAN_VIP": HALanVIP.String(), "WAN_VIP": HAWanVIP.String(),
			"LAN_ADDR": n.LanAddr.String(), "WAN_ADDR": n.WanAddr.String(),
		}},
		{packaging.Notify, 0o700, nil},
	}
	for _, f := range files {
		b, err := packaging.Render(f.name, f.vars)
		if err != nil {
			return err
		}
		if err := os.WriteFile(n.path(f.name), b, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// StartConntrackd starts conntrackd in the node (foreground, its lock,
// socket and log in Dir).
func (n *HANode) StartConntrackd() error {
	// A lock left by a killed conntrackd would keep the new one from
	// starting, as on a host that crashed.
	_ = os.Remove(n.path("conntrackd.lock"))
	p, err := StartProc(n.NS, "conntrackd", "-C", n.path(packaging.Conntrackd))
	if err != nil {
		return err
	}
	n.Conntrackd = p
	// Ready when its control socket answers.
	return n.waitFor("conntrackd", 10*time.Second, func() bool {
		_, err := n.Ctd("-s")
		return err == nil
	})
}

// Ctd runs a conntrackd client command against the node's conntrackd.
func (n *HANode) Ctd(args ...string) (string, error) {
	return n.NS.Run("conntrackd", append([]string{"-C", n.path(packaging.Conntrackd)}, args...)...)
}

// StartKeepalived starts keepalived (VRRP only, foreground) in the node.
// The notify script logs to Dir/notify.log.
func (n *HANode) StartKeepalived() error {
	p, err := StartProc(n.NS, "env", "FQDNGATE_HA_LOG="+n.path("notify.log"),
		"keepalived", "--dont-fork", "--log-console", "--log-detail", "--no-syslog", "--vrrp",
		"--use-file", n.path(packaging.Keepalived),
		"--pid", n.path("keepalived.pid"), "--vrrp_pid", n.path("keepalived-vrrp.pid"))
	if err != nil {
		return err
	}
	n.Keepalived = p
	return nil
}

// StartGateway writes cfg as the node's fqdngate.yaml, starts binary with
// it and waits until /readyz answers 200.
func (n *HANode) StartGateway(ctx context.Context, binary, cfg string, timeout time.Duration) error {
	path := n.path("fqdngate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return err
	}
	p, err := StartProc(n.NS, binary, "run", "--config", path)
	if err != nil {
		return err
	}
	n.Gate = p
	return n.WaitReady(ctx, timeout)
}

// WaitReady waits until the node's fqdngate reports ready.
func (n *HANode) WaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		code, body, err := n.Readyz()
		if code == http.StatusOK {
			return nil
		}
		if n.Gate != nil {
			if done, perr := n.Gate.Exited(); done {
				return fmt.Errorf("%s: fqdngate exited: %v\n%s", n.Name, perr, n.Gate.Log.String())
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s: fqdngate not ready after %s (%d %q %v)", n.Name, timeout, code, body, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Readyz asks the node's fqdngate for /readyz, from inside the node.
func (n *HANode) Readyz() (int, string, error) {
	resp, err := n.APIClient().Get("http://" + HAAPI + "/readyz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

// APIClient talks to HTTP servers inside the node (fqdngate's API).
// net/http dials on goroutines of its own, so the socket is made inside
// the namespace by the dial function.
func (n *HANode) APIClient() *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := n.NS.Do(func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, DialContext: dial}}
}

// HoldsVIP reports whether the node has the LAN VIP on its LAN
// interface and that interface is up (a crashed node keeps the address on
// a dead link).
func (n *HANode) HoldsVIP() bool {
	link, err := n.NS.Run("ip", "-o", "link", "show", "dev", HALanIf)
	if err != nil || !strings.Contains(link, "state UP") {
		return false
	}
	out, err := n.NS.Run("ip", "-4", "-o", "addr", "show", "dev", HALanIf)
	return err == nil && strings.Contains(out, " "+HALanVIP.String()+"/")
}

// Crash is the node dying: fqdngate, keepalived and conntrackd get
// SIGKILL (nothing cleans up: the VIPs stay on the interfaces, the table
// stays in the kernel) and every link of the node goes down.
func (n *HANode) Crash() error {
	for _, p := range []**Proc{&n.Keepalived, &n.Gate, &n.Conntrackd} {
		if *p != nil {
			(*p).Kill()
			*p = nil
		}
	}
	var errs []error
	for _, dev := range []string{HALanIf, HAWanIf, HASyncIf} {
		if _, err := n.NS.Run("ip", "link", "set", dev, "down"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Reboot brings a crashed node's links back the way a reboot finds them:
// no VIP, an empty conntrack table. fqdngate's table and state directory
// stay (fqdngate reconciles them when it starts). The daemons are started
// by the caller.
func (n *HANode) Reboot() error {
	steps := [][]string{
		{"ip", "addr", "del", fmt.Sprintf("%s/%d", HALanVIP, HALanNet.Bits()), "dev", HALanIf},
		{"ip", "addr", "del", fmt.Sprintf("%s/%d", HAWanVIP, HAWanNet.Bits()), "dev", HAWanIf},
	}
	for _, s := range steps {
		_, _ = n.NS.Run(s[0], s[1:]...) // absent when keepalived never got the VIPs
	}
	if _, err := n.NS.Run("conntrack", "-F"); err != nil {
		return err
	}
	for _, dev := range []string{HALanIf, HAWanIf, HASyncIf} {
		if _, err := n.NS.Run("ip", "link", "set", dev, "up"); err != nil {
			return err
		}
	}
	// The default route went with the uplink's link.
	_, err := n.NS.Run("ip", "route", "replace", "default", "via", HAInetAddr.String())
	return err
}

// SetSyncLink cuts (up false) or restores the sync link between the nodes.
func (h *HA) SetSyncLink(up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	for _, n := range h.Nodes {
		if _, err := n.NS.Run("ip", "link", "set", HASyncIf, state); err != nil {
			return err
		}
	}
	return nil
}

// AddDevice adds a device at addr on the device network whose default
// gateway is gw: the LAN VIP, or one node's own LAN address. The fake
// internet routes addr's replies back to the matching uplink address.
func (h *HA) AddDevice(role string, addr, gw netip.Addr) (*NS, error) {
	ns, err := NewNS(role)
	if err != nil {
		return nil, err
	}
	h.all = append(h.all, ns)
	h.devices = append(h.devices, ns)
	h.ports++
	port := fmt.Sprintf("dev%d", h.ports)
	if err := Veth(h.LAN, port, ns, "eth0"); err != nil {
		return nil, err
	}
	back := HAWanVIP
	for _, n := range h.Nodes {
		if gw == n.LanAddr {
			back = n.WanAddr
		}
	}
	steps := [][]string{
		{h.LAN.Name, "ip", "link", "set", port, "master", "br0"},
		{ns.Name, "ip", "addr", "add", fmt.Sprintf("%s/%d", addr, HALanNet.Bits()), "dev", "eth0"},
		{ns.Name, "ip", "route", "add", "default", "via", gw.String()},
	}
	if back != HAWanVIP {
		steps = append(steps, []string{h.Inet.Name, "ip", "route", "add", addr.String() + "/32", "via", back.String()})
	}
	if err := runSteps(h.all, steps); err != nil {
		return nil, err
	}
	return ns, nil
}

// Close stops every daemon (SIGTERM, then SIGKILL), kills whatever else
// still runs in the lab's namespaces, deletes them and the lab's files.
func (h *HA) Close() error {
	var errs []error
	for _, n := range h.Nodes {
		if n == nil {
			continue
		}
		for _, p := range []**Proc{&n.Keepalived, &n.Gate, &n.Conntrackd} {
			if *p != nil {
				if err := (*p).Stop(10 * time.Second); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", n.Name, err))
				}
				*p = nil
			}
		}
	}
	for _, ns := range h.all {
		// A conntrackd the notify script started on its own, say.
		killAll(ns)
		if err := ns.Delete(); err != nil {
			errs = append(errs, err)
		}
	}
	h.all = nil
	if h.Dir != "" {
		errs = append(errs, os.RemoveAll(h.Dir))
	}
	return errors.Join(errs...)
}

// NotifyLog is what the notify script logged on the node so far.
func (n *HANode) NotifyLog() string {
	b, _ := os.ReadFile(n.path("notify.log"))
	return string(b)
}

// Logs is every daemon's output and the notify scripts' log, for a
// failing test.
func (h *HA) Logs() string {
	var b strings.Builder
	for _, n := range h.Nodes {
		if n == nil {
			continue
		}
		for _, p := range []*Proc{n.Keepalived, n.Conntrackd, n.Gate} {
			if p != nil {
				fmt.Fprintf(&b, "--- %s %s\n%s\n", n.Name, p.Name, p.Log.String())
			}
		}
		for _, f := range []string{"notify.log", "conntrackd.log"} {
			if bs, err := os.ReadFile(n.path(f)); err == nil {
				fmt.Fprintf(&b, "--- %s %s\n%s\n", n.Name, f, bs)
			}
		}
	}
	return b.String()
}

func (n *HANode) waitFor(what string, timeout time.Duration, ok func() bool) error {
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s not up after %s", n.Name, what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// killAll kills every process left in ns.
func killAll(ns *NS) {
	out, err := run("ip", "netns", "pids", ns.Name)
	if err != nil {
		return
	}
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// DialFrom opens a TCP connection from inside ns.
func DialFrom(ns *NS, addr netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr.String(), timeout)
		return err
	})
	return c, err
}
