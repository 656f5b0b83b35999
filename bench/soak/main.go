// Command soak runs fqdngate in the CDN lab for a long while under a mixed
// load, with floods and upstream outages, and reports the daemon's memory
// and goroutines over the run: what a leak or an unbounded structure
// would show. It is run by hand (bench/soak.sh), as root; every packet
// stays inside the lab's namespaces.
//
// The load, from the lab's device:
//   - a steady mix at -qps: allowed names of the Azure Sphere profile (A
//     and AAAA), denied names, each answer's address connected to on
//     tcp/443 now and then;
//   - every -flood-every, for -flood-for, random names under an allowed
//     wildcard at -flood-qps (the per-client quota and rate limit at work);
//   - every -flap-every, for -flap-for, the upstream unreachable (its DNS
//     dropped in the fake internet).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/lab"
)

type options struct {
	bin                  string
	duration, sample     time.Duration
	qps, floodQPS        int
	floodEvery, floodFor time.Duration
	flapEvery, flapFor   time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/fqdngate", "the fqdngate binary")
	flag.DurationVar(&o.duration, "duration", 30*time.Minute, "how long to run")
	flag.DurationVar(&o.sample, "sample", time.Minute, "how often to read the daemon's memory and goroutines")
	flag.IntVar(&o.qps, "qps", 300, "the steady mix, queries a second")
	flag.IntVar(&o.floodQPS, "flood-qps", 2000, "queries a second of random names during a flood")
	flag.DurationVar(&o.floodEvery, "flood-every", 5*time.Minute, "time between floods")
	flag.DurationVar(&o.floodFor, "flood-for", 30*time.Second, "length of a flood")
	flag.DurationVar(&o.flapEvery, "flap-every", 3*time.Minute, "time between upstream outages")
	flag.DurationVar(&o.flapFor, "flap-for", 20*time.Second, "length of an upstream outage")
	flag.Parse()
	if !lab.IsRoot() {
		fmt.Fprintln(os.Stderr, "soak: needs root (network namespaces, nftables)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// floodZone is the allowed wildcard the floods ask random names under.
const floodZone = "flood.soak.example"

func run(ctx context.Context, o options) error {
	sites := append(lab.SphereSites("soakhub"), lab.Site{Name: "*." + floodZone, Kind: lab.Stable})
	l, err := lab.Up(sites, 20*time.Second)
	if err != nil {
		return err
	}
	defer l.Close()
	dir, err := os.MkdirTemp("", "fqdngate-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg := filepath.Join(dir, "fqdngate.yaml")
	if err := os.WriteFile(cfg, []byte(config(dir)), 0o600); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "fqdngate.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := l.GateGW.Command(o.bin, "run", "--config", cfg)
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start fqdngate: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	}()

	dev, err := newDevice(l.GateDev)
	if err != nil {
		return err
	}
	defer dev.close()
	if err := dev.waitReady(ctx); err != nil {
		return err
	}
	api := apiClient(l.GateGW)

	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() { dev.steady(ctx, o.qps) })
	wg.Go(func() { dev.connects(ctx, l.GateDev) })
	wg.Go(func() { every(ctx, o.floodEvery, o.floodFor, func(c context.Context) { dev.flood(c, o.floodQPS) }) })
	wg.Go(func() { every(ctx, o.flapEvery, o.flapFor, func(c context.Context) { flap(c, l.Inet) }) })

	var samples []sample
	take := func() {
		s, err := read(api, cmd.Process.Pid)
		if err != nil {
			fmt.Fprintln(os.Stderr, "soak: sample:", err)
			return
		}
		s.at = time.Since(start).Round(time.Second)
		s.load = dev.counts()
		samples = append(samples, s)
		fmt.Fprintln(os.Stderr, s.line())
	}
	take()
	tick := time.NewTicker(o.sample)
	defer tick.Stop()
	var died error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-exited:
			died = fmt.Errorf("fqdngate exited during the soak: %v (log: %s)", err, logf.Name())
			exited <- err
			cancel()
			break loop
		case <-tick.C:
			take()
		}
	}
	wg.Wait()
	if died == nil {
		take()
	}
	report(os.Stdout, o, samples)
	return died
}

// config is the gateway's: the Sphere profile, the flood wildcard, a
// small ledger so that floods reach its caps, a per-client rate limit.
func config(dir string) string {
	return fmt.Sprintf(`mode: enforce
listen:
  dns: ["%s:53"]
upstreams: ["%s"]
params:
  iot_hub: soakhub
enforcer:
  min_ttl: 0s
  grace: 5s
  max_entries: 20000
clients:
  - name: devices
    cidrs: ["%s"]
    profiles: [azure-sphere]
    max_qps: 1000
    rules:
      - name: flood
        fqdn: ["*.%s"]
        ports: ["tcp/443"]
serve_stale: 10m
state_dir: %s
log:
  level: warn
`, lab.GateGW, lab.UpstreamDNS, lab.GateDevNet, floodZone, filepath.Join(dir, "state"))
}

// every runs f for length, each period, until ctx ends.
func every(ctx context.Context, period, length time.Duration, f func(context.Context)) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c, cancel := context.WithTimeout(ctx, length)
			f(c)
			cancel()
		}
	}
}

// flap makes the upstream unreachable until ctx ends: the fake internet
// drops DNS to it.
func flap(ctx context.Context, inet *lab.NS) {
	const table = "soakflap"
	if _, err := inet.Run("nft", "add table inet "+table+
		"; add chain inet "+table+" in { type filter hook input priority 0; }"+
		"; add rule inet "+table+" in meta l4proto { tcp, udp } th dport 53 drop"); err != nil {
		fmt.Fprintln(os.Stderr, "soak: flap:", err)
		return
	}
	<-ctx.Done()
	if _, err := inet.Run("nft", "delete", "table", "inet", table); err != nil {
		fmt.Fprintln(os.Stderr, "soak: flap end:", err)
	}
}

// device asks fqdngate from the lab's device over two UDP sockets made in
// its namespace (a socket keeps the namespace it was made in).
type device struct {
	steadyConn, floodConn *net.UDPConn
	server                *net.UDPAddr

	mu    sync.Mutex
	addrs []netip.AddrPort // recent answers on their rule's port, for connects

	sent, noerror, nxdomain, servfail, refused, other atomic.Uint64
	connOK, connFail                                  atomic.Uint64
}

func newDevice(ns *lab.NS) (*device, error) {
	d := &device{server: net.UDPAddrFromAddrPort(netip.AddrPortFrom(lab.GateGW, 53))}
	err := ns.Do(func() error {
		var err error
		if d.steadyConn, err = net.DialUDP("udp", nil, d.server); err != nil {
			return err
		}
		d.floodConn, err = net.DialUDP("udp", nil, d.server)
		return err
	})
	if err != nil {
		return nil, err
	}
	for _, c := range []*net.UDPConn{d.steadyConn, d.floodConn} {
		go d.read(c)
	}
	return d, nil
}

func (d *device) close() {
	d.steadyConn.Close()
	d.floodConn.Close()
}

func (d *device) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(15 * time.Second)
	for d.nxdomain.Load() == 0 {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return errors.New("fqdngate did not answer within 15 s")
		}
		d.send(d.steadyConn, "ready-probe.invalid.", dns.TypeA)
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

func (d *device) send(c *net.UDPConn, name string, qtype uint16) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	b, err := m.Pack()
	if err != nil {
		return
	}
	if _, err := c.Write(b); err == nil {
		d.sent.Add(1)
	}
}

func (d *device) read(c *net.UDPConn) {
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		m := new(dns.Msg)
		if m.Unpack(buf[:n]) != nil {
			d.other.Add(1)
			continue
		}
		switch m.Rcode {
		case dns.RcodeSuccess:
			d.noerror.Add(1)
			port := portOf(m)
			for _, rr := range m.Answer {
				if a, ok := rr.(*dns.A); ok {
					if ad, ok := netip.AddrFromSlice(a.A); ok {
						d.remember(netip.AddrPortFrom(ad.Unmap(), port))
					}
				}
			}
		case dns.RcodeNameError:
			d.nxdomain.Add(1)
		case dns.RcodeServerFailure:
			d.servfail.Add(1)
		case dns.RcodeRefused:
			d.refused.Add(1)
		default:
			d.other.Add(1)
		}
	}
}

// portOf is the port the Sphere profile (or the flood rule) opens for the
// answer's name: connects go where the policy allows, so a failed one is
// an answer that did not work.
func portOf(m *dns.Msg) uint16 {
	if len(m.Question) > 0 && onPort80[strings.ToLower(m.Question[0].Name)] {
		return 80
	}
	return 443
}

var onPort80 = map[string]bool{"www.msftconnecttest.com.": true, "prod.update.sphere.azure.net.": true}

func (d *device) remember(a netip.AddrPort) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.addrs) >= 64 {
		d.addrs = d.addrs[1:]
	}
	d.addrs = append(d.addrs, a)
}

// steadyNames is the mix: the Sphere profile's names and denied ones.
var steadyNames = []string{
	"prod.update.sphere.azure.net.", "www.msftconnecttest.com.", "prod.core.sphere.azure.net.",
	"prod.device.core.sphere.azure.net.", "prod.deviceauth.sphere.azure.net.", "anse.azurewatson.microsoft.com.",
	"prodmsimg.blob.core.windows.net.", "soakhub.azure-devices.net.",
}

func (d *device) steady(ctx context.Context, qps int) {
	t := time.NewTicker(time.Second / time.Duration(max(qps, 1)))
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		switch {
		case i%10 == 9: // denied, with a random label (exfiltration-like)
			d.send(d.steadyConn, fmt.Sprintf("x%08x.telemetry.vendor.example.", rand.Uint32()), dns.TypeA)
		case i%10 == 8:
			d.send(d.steadyConn, steadyNames[i%len(steadyNames)], dns.TypeAAAA)
		default:
			d.send(d.steadyConn, steadyNames[i%len(steadyNames)], dns.TypeA)
		}
	}
}

func (d *device) flood(ctx context.Context, qps int) {
	t := time.NewTicker(time.Second / time.Duration(max(qps, 1)))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.send(d.floodConn, fmt.Sprintf("r%016x.%s.", rand.Uint64(), floodZone), dns.TypeA)
		}
	}
}

// connects opens a recent answer's address on its rule's port ten times a
// second.
func (d *device) connects(ctx context.Context, ns *lab.NS) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.mu.Lock()
		var a netip.AddrPort
		if len(d.addrs) > 0 {
			a = d.addrs[rand.IntN(len(d.addrs))]
		}
		d.mu.Unlock()
		if !a.IsValid() {
			continue
		}
		err := ns.Do(func() error {
			c, err := net.DialTimeout("tcp", a.String(), time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err != nil {
			d.connFail.Add(1)
		} else {
			d.connOK.Add(1)
		}
	}
}

type loadCounts struct {
	sent, noerror, nxdomain, servfail, refused, other, connOK, connFail uint64
}

func (d *device) counts() loadCounts {
	return loadCounts{d.sent.Load(), d.noerror.Load(), d.nxdomain.Load(), d.servfail.Load(), d.refused.Load(),
		d.other.Load(), d.connOK.Load(), d.connFail.Load()}
}

// apiClient reaches the daemon's API on loopback inside the gateway's
// namespace.
func apiClient(ns *lab.NS) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
		DisableKeepAlives: true,
	}}
}

type sample struct {
	at                   time.Duration
	rssKiB               int
	goroutines, entries  float64
	rateLimited, evicted float64
	load                 loadCounts
}

func (s sample) line() string {
	return fmt.Sprintf("soak: %8s rss %6.1f MiB  goroutines %4.0f  ledger %6.0f  rate-limited %8.0f  sent %d servfail %d",
		s.at, float64(s.rssKiB)/1024, s.goroutines, s.entries, s.rateLimited, s.load.sent, s.load.servfail)
}

func read(api *http.Client, pid int) (sample, error) {
	var s sample
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			s.rssKiB, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	resp, err := api.Get("http://127.0.0.1:9053/metrics")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		metric, _, _ := strings.Cut(name, "{")
		switch metric {
		case "go_goroutines":
			s.goroutines = v
		case "fqdngate_ledger_entries":
			s.entries = v
		case "fqdngate_dns_rate_limited_total":
			s.rateLimited += v
		case "fqdngate_ledger_evictions_total":
			s.evicted += v
		}
	}
	return s, sc.Err()
}

func report(w *os.File, o options, samples []sample) {
	fmt.Fprintf(w, "# fqdngate soak: %s, %d qps steady, floods of %d qps for %s every %s, upstream down %s every %s\n\n",
		o.duration, o.qps, o.floodQPS, o.floodFor, o.floodEvery, o.flapFor, o.flapEvery)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "at\tRSS MiB\tgoroutines\tledger\tevicted\trate-limited\tsent\tNOERROR\tNXDOMAIN\tSERVFAIL\tREFUSED\tconnect ok\tconnect fail\t")
	for _, s := range samples {
		l := s.load
		fmt.Fprintf(tw, "%s\t%.1f\t%.0f\t%.0f\t%.0f\t%.0f\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", s.at, float64(s.rssKiB)/1024,
			s.goroutines, s.entries, s.evicted, s.rateLimited, l.sent, l.noerror, l.nxdomain, l.servfail, l.refused, l.connOK, l.connFail)
	}
	tw.Flush()
	if len(samples) >= 2 {
		first, last := samples[0], samples[len(samples)-1]
		peak := first
		for _, s := range samples {
			if s.rssKiB > peak.rssKiB {
				peak = s
			}
		}
		fmt.Fprintf(w, "\nstart: RSS %.1f MiB, %.0f goroutines; end: RSS %.1f MiB, %.0f goroutines; peak RSS %.1f MiB at %s\n",
			float64(first.rssKiB)/1024, first.goroutines, float64(last.rssKiB)/1024, last.goroutines, float64(peak.rssKiB)/1024, peak.at)
	}
}
