// Command verify measures what flow verification (enforcer.verify) costs
// a new TLS flow: fqdngate runs as a gateway in namespaces of its own,
// pinned to one CPU, once with verification off and once enforcing, in
// the same run, and a device opens new TCP connections to an allowed
// name's address through it, each sending a ClientHello recorded from
// Go's crypto/tls (two segments, hybrid post-quantum key share). It
// reports, per mode, new flows a second from a bounded pool of clients,
// fqdngate's CPU time per flow (so the flows one core verifies a second),
// and the time from the device's connect to the server having the whole
// ClientHello, p50 and p99, one flow at a time and under load. Root;
// every packet stays inside its namespaces. bench/verify.sh runs it; the
// harness puts its JSON (-json) into bench/RESULTS.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/bench/verify/report"
	"github.com/fqdngate/fqdngate/internal/lab"
)

const (
	gwAddr   = "192.0.2.1"
	devAddr  = "192.0.2.10"
	dnsAddr  = "198.51.100.53"
	siteName = "bench.verify.example"
	apiAddr  = "127.0.0.1:9053"
)

type options struct {
	bin        string
	duration   time.Duration
	clients    int
	servers    int
	sequential int
	gateCPU    int
	profile    string
	jsonOut    string
}

func main() {
	// fqdngate is started with Pdeathsig, which fires when the thread
	// that forked it ends, not the process: a load thread that locked
	// the same thread and ended would stop fqdngate in the middle of a
	// run. The main goroutine, which starts it, keeps the main thread.
	runtime.LockOSThread()
	var o options
	flag.StringVar(&o.bin, "bin", "bin/fqdngate", "the fqdngate binary")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "how long each mode's rate run lasts")
	flag.IntVar(&o.clients, "clients", 32, "concurrent clients in the rate run (each opens one flow after the other)")
	flag.IntVar(&o.servers, "servers", 8, "server threads")
	flag.IntVar(&o.sequential, "sequential", 2000, "flows, one at a time, for the latency without load")
	flag.IntVar(&o.gateCPU, "cpu", 0, "the CPU fqdngate is pinned to (taskset); run the benchmark itself on another")
	flag.StringVar(&o.profile, "profile", "", "save fqdngate's CPU profile of one more enforcing rate run here (FQDNGATE_PPROF=1)")
	flag.StringVar(&o.jsonOut, "json", "", "also write the figures as JSON here (bench/harness -verify reads it)")
	flag.Parse()
	if !lab.IsRoot() {
		fmt.Fprintln(os.Stderr, "verify: needs root (network namespaces, nftables)")
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "verify:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	l, err := newLab(o)
	if err != nil {
		return err
	}
	defer l.close()
	// Interrupted, the namespaces go too (fqdngate ends with them: it
	// was started with Pdeathsig).
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		l.close()
		os.Exit(1)
	}()
	rep := report.Report{HelloBytes: len(l.hello), Clients: o.clients, Duration: o.duration, Sequential: o.sequential}
	for _, mode := range []string{"off", "enforce"} {
		m, err := l.measure(o, mode, "")
		if err != nil {
			return fmt.Errorf("verify %s: %w", mode, err)
		}
		rep.Modes = append(rep.Modes, m)
	}
	if o.profile != "" {
		if _, err := l.measure(o, "enforce", o.profile); err != nil {
			return fmt.Errorf("profile: %w", err)
		}
	}
	rep.WriteTable(os.Stdout)
	for _, t := range rep.Targets() {
		fmt.Printf("- %s, goal %s: %s, met: %v %s\n", t.What, t.Goal, t.Value, t.Met, t.Doubt)
	}
	if o.jsonOut != "" {
		return rep.Write(o.jsonOut)
	}
	return nil
}

// benchLab is a device, the gateway and a fake internet with the name's
// authoritative DNS and a server on its address.
type benchLab struct {
	gw, dev, inet *lab.NS
	stopDNS       func()
	srv           *server
	hello         []byte
	dir           string
}

func newLab(o options) (l *benchLab, err error) {
	l = &benchLab{}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	if l.hello, err = recordHello(siteName); err != nil {
		return nil, err
	}
	if l.dir, err = os.MkdirTemp("", "fqdngate-bench-verify-"); err != nil {
		return nil, err
	}
	for _, p := range []struct {
		ns   **lab.NS
		role string
	}{{&l.gw, "bvgw"}, {&l.dev, "bvdev"}, {&l.inet, "bvinet"}} {
		if *p.ns, err = lab.NewNS(p.role); err != nil {
			return nil, err
		}
	}
	if err := lab.Veth(l.gw, "dev0", l.dev, "eth0"); err != nil {
		return nil, err
	}
	if err := lab.Veth(l.gw, "up0", l.inet, "eth0"); err != nil {
		return nil, err
	}
	steps := []struct {
		ns   *lab.NS
		args []string
	}{
		{l.gw, []string{"ip", "addr", "add", gwAddr + "/24", "dev", "dev0"}},
		{l.gw, []string{"ip", "addr", "add", "198.51.100.1/24", "dev", "up0"}},
		{l.gw, []string{"ip", "route", "add", "default", "via", "198.51.100.2"}},
		{l.gw, []string{"sysctl", "-qw", "net.ipv4.ip_forward=1"}},
		{l.dev, []string{"ip", "addr", "add", devAddr + "/24", "dev", "eth0"}},
		{l.dev, []string{"ip", "route", "add", "default", "via", gwAddr}},
		{l.dev, []string{"sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000"}},
		{l.inet, []string{"ip", "addr", "add", "198.51.100.2/24", "dev", "eth0"}},
		{l.inet, []string{"ip", "addr", "add", dnsAddr + "/32", "dev", "lo"}},
		{l.inet, []string{"ip", "route", "add", "local", "203.0.113.0/24", "dev", "lo"}},
		{l.inet, []string{"ip", "route", "add", "192.0.2.0/24", "via", "198.51.100.1"}},
	}
	for _, s := range steps {
		if out, err := s.ns.Run(s.args[0], s.args[1:]...); err != nil {
			return nil, fmt.Errorf("%v: %w: %s", s.args, err, out)
		}
	}
	auth := lab.NewAuthDNS([]lab.Site{{Name: siteName, Kind: lab.Stable}}, 20*time.Second)
	if l.stopDNS, err = auth.Serve(l.inet, dnsAddr+":53"); err != nil {
		return nil, err
	}
	if l.srv, err = startServer(l.inet, netip.MustParseAddrPort("0.0.0.0:443"), len(l.hello), o.servers); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *benchLab) close() {
	if l.srv != nil {
		l.srv.close()
	}
	if l.stopDNS != nil {
		l.stopDNS()
	}
	for _, ns := range []*lab.NS{l.gw, l.dev, l.inet} {
		if ns != nil {
			_ = ns.Delete()
		}
	}
	if l.dir != "" {
		os.RemoveAll(l.dir)
	}
}

func (l *benchLab) config(mode string) string {
	return fmt.Sprintf(`mode: enforce
listen:
  dns: ["%s:53"]
  api: "%s"
upstreams: ["%s"]
enforcer:
  min_ttl: 10m
  grace: 1m
  verify: %s
clients:
  - name: devices
    cidrs: ["192.0.2.0/24"]
    max_qps: 0
    max_inflight: 0
    rules:
      - name: site
        fqdn: ["%s"]
        ports: ["tcp/443"]
state_dir: ""
log:
  level: warn
`, gwAddr, apiAddr, dnsAddr, mode, siteName)
}

// measure starts fqdngate on its CPU with verify mode, resolves the name
// from the device (which opens its address for the device), and times
// new flows. With profile set, it runs only the rate run, under the
// profiler, and saves the profile there.
func (l *benchLab) measure(o options, mode, profile string) (report.Mode, error) {
	m := report.Mode{Verify: mode}
	cfg := filepath.Join(l.dir, "gw-"+mode+".yaml")
	if err := os.WriteFile(cfg, []byte(l.config(mode)), 0o600); err != nil {
		return m, err
	}
	cmd := l.gw.Command("taskset", "-c", strconv.Itoa(o.gateCPU), o.bin, "run", "--config", cfg)
	cmd.Stderr = os.Stderr
	cmd.Env = append(os.Environ(), "FQDNGATE_PPROF=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return m, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		_, _ = l.gw.Run("nft", "delete", "table", "inet", "fqdngate")
	}()
	site, err := l.resolve()
	if err != nil {
		return m, err
	}
	dst := netip.AddrPortFrom(site, 443)
	// ip netns exec and taskset exec the next program: the process is
	// fqdngate's.
	pid := cmd.Process.Pid
	// A short warm-up: the first flows pay for the conntrack entries'
	// and the daemon's first allocations.
	if err := l.flows(dst, 1, 200, nil); err != nil {
		return m, fmt.Errorf("warm-up: %w", err)
	}
	if profile == "" {
		f := newFlows(o.sequential)
		if err := l.flows(dst, 1, 0, f); err != nil {
			return m, err
		}
		m.P50, m.P99 = pct(f.latencies())
		m.ConnectP50, m.ConnectP99 = pct(f.connects())
	}
	rate := func() error {
		f := newFlows(int(o.duration.Seconds()*200_000) + 1000)
		stop := make(chan struct{})
		timer := time.AfterFunc(o.duration, func() { close(stop) })
		defer timer.Stop()
		cpu0, err := readCPU(o.gateCPU)
		if err != nil {
			return err
		}
		proc0, err := procCPU(pid)
		if err != nil {
			return err
		}
		got0 := l.srv.got.Load()
		l.srv.cur.Store(f)
		start := time.Now()
		m.Failed, err = load(l.dev, dst, l.hello, f, o.clients, stop)
		select {
		case err := <-exited:
			return fmt.Errorf("fqdngate ended during the run: %v", err)
		default:
		}
		el := time.Since(start)
		m.Flows = l.srv.got.Load() - got0
		cpu1, _ := readCPU(o.gateCPU)
		proc1, _ := procCPU(pid)
		if err != nil {
			fmt.Fprintf(os.Stderr, "verify %s: %d flows failed, the first: %v\n%s", mode, m.Failed, err, l.verifyMetrics())
		}
		m.Rate = float64(m.Flows) / el.Seconds()
		m.LoadP50, m.LoadP99 = pct(f.latencies())
		if m.Flows > 0 {
			m.UserUS = float64(proc1[0]-proc0[0]) * 1e6 / userHz / float64(m.Flows)
			m.SysUS = float64(proc1[1]-proc0[1]) * 1e6 / userHz / float64(m.Flows)
		}
		d := cpu1.minus(cpu0)
		if tot := float64(d.total()); tot > 0 {
			m.CPUBusy = 100 * float64(d.total()-d.idle-d.steal) / tot
			m.CPUSoftirq = 100 * float64(d.softirq) / tot
			m.CPUSteal = 100 * float64(d.steal) / tot
		}
		return nil
	}
	if profile == "" {
		return m, rate()
	}
	perr := make(chan error, 1)
	go func() { perr <- l.fetchProfile(profile, o.duration) }()
	if err := rate(); err != nil {
		return m, err
	}
	return m, <-perr
}

// flows runs n flows (or as many as f holds) with clients clients and
// fails on the first that fails.
func (l *benchLab) flows(dst netip.AddrPort, clients, n int, f *flows) error {
	if f == nil {
		f = newFlows(n)
	}
	l.srv.cur.Store(f)
	if failed, err := load(l.dev, dst, l.hello, f, clients, nil); failed > 0 {
		return fmt.Errorf("%d flows failed, the first: %w", failed, err)
	}
	return nil
}

func pct(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	return d[len(d)/2], d[len(d)*99/100]
}

// verifyMetrics are fqdngate's verification and drop counters, to say
// why flows failed.
func (l *benchLab) verifyMetrics() string {
	body, err := l.api("/metrics", 5*time.Second)
	if err != nil {
		return err.Error() + "\n"
	}
	var b strings.Builder
	for line := range strings.Lines(string(body)) {
		if strings.HasPrefix(line, "fqdngate_verify_") || strings.HasPrefix(line, "fqdngate_drops_total") {
			b.WriteString("  " + line)
		}
	}
	if ev, err := l.api("/api/v1/events", 5*time.Second); err == nil {
		b.WriteString("  events: " + string(ev[:min(len(ev), 1500)]) + "\n")
	}
	return b.String()
}

// api gets path from fqdngate's API in the gateway's namespace.
func (l *benchLab) api(path string, timeout time.Duration) ([]byte, error) {
	resp, err := l.apiGet(path, timeout)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

func (l *benchLab) apiGet(path string, timeout time.Duration) (*http.Response, error) {
	dial := func(network, addr string) (net.Conn, error) {
		var c net.Conn
		err := l.gw.Do(func() error {
			var err error
			c, err = net.Dial(network, addr)
			return err
		})
		return c, err
	}
	c := &http.Client{Transport: &http.Transport{Dial: dial}, Timeout: timeout}
	resp, err := c.Get("http://" + apiAddr + path)
	if err == nil && resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %s", path, resp.Status)
	}
	return resp, err
}

// fetchProfile saves fqdngate's CPU profile over d (from its API, in the
// gateway's namespace) as path.
func (l *benchLab) fetchProfile(path string, d time.Duration) error {
	resp, err := l.apiGet(fmt.Sprintf("/debug/pprof/profile?seconds=%d", max(1, int(d.Seconds())-1)), d+10*time.Second)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// resolve asks the gateway from the device until it answers.
func (l *benchLab) resolve() (netip.Addr, error) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		var addr netip.Addr
		err := l.dev.Do(func() error {
			m := new(dns.Msg)
			m.SetQuestion(siteName+".", dns.TypeA)
			r, _, err := (&dns.Client{Timeout: 500 * time.Millisecond}).Exchange(m, gwAddr+":53")
			if err != nil {
				return err
			}
			for _, rr := range r.Answer {
				if a, ok := rr.(*dns.A); ok {
					addr, _ = netip.AddrFromSlice(a.A)
				}
			}
			if !addr.IsValid() {
				return errors.New("no address in the answer")
			}
			return nil
		})
		if err == nil {
			return addr.Unmap(), nil
		}
		if time.Now().After(deadline) {
			return netip.Addr{}, fmt.Errorf("fqdngate did not answer within 15 s: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// userHz is the unit of /proc/stat and /proc/PID/stat: USER_HZ, 100 on
// every Linux ABI.
const userHz = 100

// cpuTicks is one CPU's line of /proc/stat.
type cpuTicks struct{ user, system, idle, irq, softirq, steal uint64 }

func (t cpuTicks) total() uint64 { return t.user + t.system + t.idle + t.irq + t.softirq + t.steal }

func (t cpuTicks) minus(o cpuTicks) cpuTicks {
	return cpuTicks{t.user - o.user, t.system - o.system, t.idle - o.idle, t.irq - o.irq, t.softirq - o.softirq, t.steal - o.steal}
}

// readCPU reads CPU n's line of /proc/stat ("cpuN user nice system idle
// iowait irq softirq steal ..."); nice counts as user, iowait as idle.
func readCPU(n int) (cpuTicks, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTicks{}, err
	}
	label := "cpu" + strconv.Itoa(n)
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 9 || f[0] != label {
			continue
		}
		var v [8]uint64
		for i := range v {
			if v[i], err = strconv.ParseUint(f[i+1], 10, 64); err != nil {
				return cpuTicks{}, fmt.Errorf("/proc/stat %s: %w", label, err)
			}
		}
		return cpuTicks{user: v[0] + v[1], system: v[2], idle: v[3] + v[4], irq: v[5], softirq: v[6], steal: v[7]}, nil
	}
	return cpuTicks{}, fmt.Errorf("/proc/stat: no %s line", label)
}

// procCPU is a process's user and system time (ticks) from
// /proc/PID/stat.
func procCPU(pid int) ([2]uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return [2]uint64{}, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return [2]uint64{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	return [2]uint64{u, st}, errors.Join(err1, err2)
}
