// Command cluster measures the fqdngate cluster in the HA lab (two
// gateways, embedded NATS on the sync link): the replication lag from an
// answer on gw1 to its element in gw2's kernel at a fixed answer rate
// (every answer a new name and a new address), measured outside fqdngate
// by watching gw2's set through netlink, and from gw2's own
// fqdngate_cluster_replication_lag_seconds histogram; and what the cluster
// costs the answering node: gw1's maximum answers a second with and
// without its cluster section, alternated in the same run. Root; every
// packet stays inside the lab's namespaces. bench/cluster.sh runs it.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/lab"
)

// The bench's device speaks IPv6 to gw1, so that every answer (an AAAA in
// 2001:db8:cd::/64) is a new element of the allow6 set: the CDN's IPv4
// range has only 256 addresses.
var (
	devAddr6 = netip.MustParseAddr("2001:db8:1::10")
	gwAddr6  = [2]netip.Addr{netip.MustParseAddr("2001:db8:1::2"), netip.MustParseAddr("2001:db8:1::3")}
)

const zone = "lag.bench.example."

type options struct {
	bin      string
	rate     int
	duration time.Duration
	qpsRun   time.Duration
	rounds   int
	workers  int
	pin      bool
	profile  string
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/fqdngate", "the fqdngate binary")
	flag.IntVar(&o.rate, "rate", 2000, "answers a second on gw1 during the lag run")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "how long the lag run lasts")
	flag.DurationVar(&o.qpsRun, "qps-run", 5*time.Second, "how long each maximum-rate run lasts")
	flag.IntVar(&o.rounds, "rounds", 2, "maximum-rate runs with and without the cluster, alternated")
	flag.IntVar(&o.workers, "workers", 32, "concurrent queries in the maximum-rate runs")
	flag.BoolVar(&o.pin, "pin", true, "gw1's fqdngate on CPU 0, gw2's and this process (the load, the upstream) on CPU 1, so gw2's work does not count against gw1")
	flag.StringVar(&o.profile, "profile", "", "write a CPU profile of gw1 (cluster on, gw2 applying) to this file")
	flag.Parse()
	if o.profile != "" {
		os.Setenv("FQDNGATE_PPROF", "1") // gw1 serves /debug/pprof on its API
	}
	if !lab.IsRoot() {
		fmt.Fprintln(os.Stderr, "cluster: needs root (network namespaces, nftables)")
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	ctx := context.Background()
	b, err := newBench()
	if err != nil {
		return err
	}
	defer b.close()
	gw1, gw2 := b.ha.Nodes[0], b.ha.Nodes[1]
	if o.pin {
		if err := pin(os.Getpid(), 1); err != nil {
			return err
		}
	}
	for i, n := range b.ha.Nodes {
		if err := n.StartGateway(ctx, o.bin, b.config(n, true), 30*time.Second); err != nil {
			return err
		}
		if o.pin {
			if err := pin(n.Gate.Pid(), i); err != nil {
				return err
			}
		}
	}
	fmt.Fprintf(os.Stderr, "lag run: %d answers/s on gw1 for %s\n", o.rate, o.duration)
	lag, err := b.lagRun(o)
	if err != nil {
		return errors.Join(err, errors.New(b.ha.Logs()))
	}
	hist, err := scrapeLag(gw2)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster: gw2's own lag histogram:", err)
	}

	// The answering node's maximum rate, cluster on and off, alternated
	// (gw1 restarted with or without its cluster section, gw2 running);
	// then with the cluster and gw2 stopped: gw1 publishing with no peer
	// applying, which leaves only gw1's own share of the cost.
	restart := func(cluster bool) error {
		if err := gw1.Gate.Stop(10 * time.Second); err != nil {
			return err
		}
		// Each run starts from an empty ledger, so that runs compare.
		if err := os.RemoveAll(gw1.Dir + "/state"); err != nil {
			return err
		}
		if err := gw1.StartGateway(ctx, o.bin, b.config(gw1, cluster), 60*time.Second); err != nil {
			return err
		}
		if o.pin {
			return pin(gw1.Gate.Pid(), 0)
		}
		return nil
	}
	var on, off, alone []float64
	// Answers per second of gw1's own CPU time: on two cores gw2's work
	// shares CPU 1 with the load, so gw1's rate alone would count it.
	var onCPU, offCPU, aloneCPU []float64
	measure := func() (qps, perCPU float64, failed int64) {
		before, _ := procCPU(gw1.Gate.Pid())
		start := time.Now()
		qps, failed = b.maxRate(o)
		after, _ := procCPU(gw1.Gate.Pid())
		if used := (after - before).Seconds(); used > 0 {
			perCPU = qps * time.Since(start).Seconds() / used
		}
		return qps, perCPU, failed
	}
	for r := 0; r < o.rounds; r++ {
		for _, cluster := range []bool{true, false} {
			if err := restart(cluster); err != nil {
				return err
			}
			var prof chan error
			if o.profile != "" && r == 0 && cluster {
				prof = make(chan error, 1)
				go func() { prof <- cpuProfile(gw1, o.qpsRun-time.Second, o.profile) }()
			}
			qps, perCPU, failed := measure()
			if prof != nil {
				if err := <-prof; err != nil {
					return err
				}
			}
			fmt.Fprintf(os.Stderr, "max rate, cluster %v: %.0f answers/s, %.0f per CPU-second of gw1 (%d failed)\n", cluster, qps, perCPU, failed)
			if cluster {
				on, onCPU = append(on, qps), append(onCPU, perCPU)
			} else {
				off, offCPU = append(off, qps), append(offCPU, perCPU)
			}
		}
	}
	if err := gw2.Gate.Stop(10 * time.Second); err != nil {
		return err
	}
	gw2.Gate = nil
	for r := 0; r < o.rounds; r++ {
		if err := restart(true); err != nil {
			return err
		}
		qps, perCPU, failed := measure()
		fmt.Fprintf(os.Stderr, "max rate, cluster true, gw2 down: %.0f answers/s, %.0f per CPU-second of gw1 (%d failed)\n", qps, perCPU, failed)
		alone, aloneCPU = append(alone, qps), append(aloneCPU, perCPU)
	}

	fmt.Printf("# fqdngate cluster: replication lag and the answering node's cost, HA lab, one run\n\n")
	fmt.Printf("Lag run: %d answers/s on gw1 for %s, every answer a new name and a new element; %d answered, %d failed, %d seen in gw2's kernel.\n\n",
		o.rate, o.duration, lag.answered, lag.failed, len(lag.lags))
	fmt.Printf("| answer on gw1 → element in gw2's kernel | p50 | p99 | max |\n|---|---|---|---|\n")
	fmt.Printf("| measured outside (netlink monitor of gw2's set) | %s | %s | %s |\n", pct(lag.lags, 50), pct(lag.lags, 99), pct(lag.lags, 100))
	fmt.Printf("| gw2's fqdngate_cluster_replication_lag_seconds (%.0f samples, bucket-interpolated) | %s | %s | |\n\n", hist.count, hist.quantile(0.5), hist.quantile(0.99))
	where := "gw1 on CPU 0, gw2 and the load on CPU 1"
	if !o.pin {
		where = "not pinned"
	}
	fmt.Printf("| gw1 maximum answers/s (%d concurrent, %s each; %s) | runs | median | per CPU-second of gw1 | median |\n|---|---|---|---|---|\n", o.workers, o.qpsRun, where)
	fmt.Printf("| with the cluster, gw2 applying | %s | %.0f | %s | %.0f |\n", joinF(on), median(on), joinF(onCPU), median(onCPU))
	fmt.Printf("| with the cluster, gw2 down | %s | %.0f | %s | %.0f |\n", joinF(alone), median(alone), joinF(aloneCPU), median(aloneCPU))
	fmt.Printf("| without | %s | %.0f | %s | %.0f |\n\n", joinF(off), median(off), joinF(offCPU), median(offCPU))
	fmt.Printf("with / without, answers/s: %.2f× with gw2 applying, %.2f× with gw2 down (medians)\n", median(on)/median(off), median(alone)/median(off))
	fmt.Printf("with / without, answers per CPU-second of gw1: %.2f× with gw2 applying, %.2f× with gw2 down (medians)\n",
		median(onCPU)/median(offCPU), median(aloneCPU)/median(offCPU))
	return nil
}

type bench struct {
	ha      *lab.HA
	dev     *lab.NS
	stopDNS func()
	seq     atomic.Uint64
}

func newBench() (b *bench, err error) {
	b = &bench{}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.ha, err = lab.UpHA(lab.HAOptions{Role: "bc"}); err != nil {
		return nil, err
	}
	for i, n := range b.ha.Nodes {
		if _, err := n.NS.Run("ip", "addr", "add", gwAddr6[i].String()+"/64", "dev", lab.HALanIf, "nodad"); err != nil {
			return nil, err
		}
	}
	if b.dev, err = b.ha.AddDevice("bcdev", netip.MustParseAddr("192.0.2.10"), b.ha.Nodes[0].LanAddr); err != nil {
		return nil, err
	}
	if _, err := b.dev.Run("ip", "addr", "add", devAddr6.String()+"/64", "dev", "eth0", "nodad"); err != nil {
		return nil, err
	}
	var servers []*dns.Server
	if err := b.ha.Inet.Do(func() error {
		pc, err := net.ListenPacket("udp", netip.AddrPortFrom(lab.UpstreamDNS, 53).String())
		if err != nil {
			return err
		}
		servers = append(servers, &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(answer)})
		return nil
	}); err != nil {
		return nil, err
	}
	for _, s := range servers {
		go func() { _ = s.ActivateAndServe() }()
	}
	b.stopDNS = func() {
		for _, s := range servers {
			_ = s.Shutdown()
		}
	}
	return b, nil
}

// answer is the zone's authoritative server: qN.lag.bench.example has
// the AAAA 2001:db8:cd::N, for 300 s.
func answer(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	q := r.Question[0]
	label, rest, _ := strings.Cut(strings.ToLower(q.Name), ".")
	n, err := strconv.ParseUint(strings.TrimPrefix(label, "q"), 10, 64)
	switch {
	case rest != zone || err != nil || !strings.HasPrefix(label, "q"):
		m.Rcode = dns.RcodeNameError
	case q.Qtype == dns.TypeAAAA:
		m.Answer = append(m.Answer, &dns.AAAA{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: 300}, AAAA: addrOf(n).AsSlice()})
	}
	_ = w.WriteMsg(m)
}

func addrOf(n uint64) netip.Addr {
	b := netip.MustParseAddr("2001:db8:cd::").As16()
	for i := 0; i < 8; i++ {
		b[15-i] = byte(n >> (8 * i))
	}
	return netip.AddrFrom16(b)
}

func (b *bench) config(n *lab.HANode, cluster bool) string {
	i := 0
	if n == b.ha.Nodes[1] {
		i = 1
	}
	// The VIP (nobody holds it here: no keepalived) is bound with the
	// cluster's free bind only.
	vip := ""
	if cluster {
		vip = fmt.Sprintf(`, "%s:53"`, lab.HALanVIP)
	}
	cfg := fmt.Sprintf(`mode: enforce
listen:
  dns: ["%s:53", "[%s]:53"%s]
  api: "%s"
upstreams: ["%s"]
cache_size: 0
enforcer:
  min_ttl: 0s
  grace: 5s
  # Room for every answer of the run: no eviction in the measurement.
  max_entries: 500000
  max_entries_per_client: 500000
clients:
  - name: bench
    cidrs: ["%s", "2001:db8:1::/64"]
    max_qps: 0  # one device asks for everything: no per-client limit
    max_inflight: 0
    rules:
      - name: lag
        fqdn: ["*.%s"]
        ports: ["tcp/443"]
state_dir: %s/state
log:
  level: warn
`, n.LanAddr, gwAddr6[i], vip, lab.HAAPI, lab.UpstreamDNS, lab.HALanNet, strings.TrimSuffix(zone, "."), n.Dir)
	if cluster {
		cfg += n.ClusterYAML()
	}
	return cfg
}

// lagResult is the lag run's outcome.
type lagResult struct {
	answered, failed int64
	lags             []time.Duration
}

// lagRun asks gw1 for o.rate new names a second for o.duration while a
// netlink monitor in gw2's namespace timestamps every element that
// appears in its allow6 set.
func (b *bench) lagRun(o options) (lagResult, error) {
	var res lagResult
	seen, stopMon, err := watchSet(b.ha.Nodes[1])
	if err != nil {
		return res, err
	}
	answeredAt := make(map[netip.Addr]time.Time)
	var mu sync.Mutex
	ctx, cancel := context.WithTimeout(context.Background(), o.duration)
	defer cancel()
	tokens := make(chan struct{}, o.rate)
	go func() {
		defer close(tokens)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		start := time.Now()
		sent := 0
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				due := int(now.Sub(start).Seconds() * float64(o.rate))
				for ; sent < due; sent++ {
					select {
					case tokens <- struct{}{}:
					default: // the workers are behind: the rate is not met, counted as failed
						atomic.AddInt64(&res.failed, 1)
					}
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		conn, err := b.conn()
		if err != nil {
			return res, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			for range tokens {
				n := b.seq.Add(1)
				if err := ask(conn, n); err != nil {
					atomic.AddInt64(&res.failed, 1)
					continue
				}
				at := time.Now()
				mu.Lock()
				answeredAt[addrOf(n)] = at
				mu.Unlock()
				atomic.AddInt64(&res.answered, 1)
			}
		}()
	}
	wg.Wait()
	// Let the last answers arrive at gw2 (bounded: what has not arrived
	// within 5 s counts as not seen).
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(answeredAt)
		mu.Unlock()
		if seen.count() >= n {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopMon()
	mu.Lock()
	defer mu.Unlock()
	for a, at := range answeredAt {
		if t, ok := seen.get(a); ok {
			res.lags = append(res.lags, max(t.Sub(at), 0))
		}
	}
	slices.Sort(res.lags)
	return res, nil
}

// conn is a UDP socket of the device, connected to gw1's IPv6 address.
func (b *bench) conn() (*dns.Conn, error) {
	var c *dns.Conn
	err := b.dev.Do(func() error {
		nc, err := net.Dial("udp", netip.AddrPortFrom(gwAddr6[0], 53).String())
		if err != nil {
			return err
		}
		c = &dns.Conn{Conn: nc}
		return nil
	})
	return c, err
}

// ask queries qN.lag.bench.example AAAA and checks the answer names its
// address.
func ask(c *dns.Conn, n uint64) error {
	m := new(dns.Msg)
	m.SetQuestion(fmt.Sprintf("q%d.%s", n, zone), dns.TypeAAAA)
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if err := c.WriteMsg(m); err != nil {
		return err
	}
	for {
		r, err := c.ReadMsg()
		if err != nil {
			return err
		}
		if r.Id != m.Id {
			continue // a late answer to an earlier query that timed out
		}
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
			return fmt.Errorf("%s", dns.RcodeToString[r.Rcode])
		}
		return nil
	}
}

// maxRate is gw1's answers a second with o.workers queries in flight for
// o.qpsRun.
func (b *bench) maxRate(o options) (float64, int64) {
	var done, failed atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), o.qpsRun)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < o.workers; w++ {
		conn, err := b.conn()
		if err != nil {
			failed.Add(1)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			for ctx.Err() == nil {
				if err := ask(conn, b.seq.Add(1)); err != nil {
					failed.Add(1)
					continue
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(done.Load()) / time.Since(start).Seconds(), failed.Load()
}

// seenSet is when each address first appeared in the watched set.
type seenSet struct {
	mu sync.Mutex
	at map[netip.Addr]time.Time
}

func (s *seenSet) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.at)
}

func (s *seenSet) get(a netip.Addr) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.at[a]
	return t, ok
}

// watchSet timestamps the new elements of node n's allow6 set as the
// kernel announces them (nftables netlink monitor in n's namespace). An
// element's key is client . address . protocol . port; the address is
// bytes 16 to 32.
func watchSet(n *lab.HANode) (*seenSet, func(), error) {
	cc, err := nftables.New(nftables.WithNetNSFd(n.NS.FD()))
	if err != nil {
		return nil, nil, fmt.Errorf("nftables in %s: %w", n.Name, err)
	}
	mon := nftables.NewMonitor(nftables.WithMonitorAction(nftables.MonitorActionNew),
		nftables.WithMonitorObject(nftables.MonitorObjectElements), nftables.WithMonitorEventBuffer(1<<16))
	events, err := cc.AddMonitor(mon)
	if err != nil {
		return nil, nil, fmt.Errorf("monitor %s: %w", n.Name, err)
	}
	s := &seenSet{at: make(map[netip.Addr]time.Time)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range events {
			now := time.Now()
			elems, ok := ev.Data.([]nftables.SetElement)
			if ev.Error != nil || !ok {
				continue
			}
			s.mu.Lock()
			for _, e := range elems {
				if len(e.Key) < 32 {
					continue
				}
				a, _ := netip.AddrFromSlice(e.Key[16:32])
				if _, dup := s.at[a]; !dup {
					s.at[a] = now
				}
			}
			s.mu.Unlock()
		}
	}()
	return s, func() { _ = mon.Close(); <-done }, nil
}

// histogram is a Prometheus histogram read from /metrics.
type histogram struct {
	count  float64
	bounds []float64
	cums   []float64
}

// scrapeLag reads gw2's replication lag histogram.
func scrapeLag(n *lab.HANode) (histogram, error) {
	var h histogram
	resp, err := n.APIClient().Get("http://" + lab.HAAPI + "/metrics")
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	const name = "fqdngate_cluster_replication_lag_seconds"
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, name+"_bucket{"):
			i := strings.Index(line, `le="`)
			j := strings.Index(line[i+4:], `"`)
			le, err1 := strconv.ParseFloat(line[i+4:i+4+j], 64)
			v, err2 := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
			if err1 == nil && err2 == nil {
				h.bounds, h.cums = append(h.bounds, le), append(h.cums, v)
			}
		case strings.HasPrefix(line, name+"_count"):
			h.count, _ = strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
		}
	}
	if len(h.bounds) == 0 {
		return h, fmt.Errorf("gw2 exports no %s", name)
	}
	return h, sc.Err()
}

// quantile interpolates linearly inside the bucket that holds q, as
// Prometheus' histogram_quantile does.
func (h histogram) quantile(q float64) string {
	if h.count == 0 {
		return "-"
	}
	rank := q * h.count
	lo, prev := 0.0, 0.0
	for i, b := range h.bounds {
		if h.cums[i] >= rank {
			if math.IsInf(b, 1) {
				return fmt.Sprintf("> %s", time.Duration(lo*float64(time.Second)))
			}
			f := (rank - prev) / math.Max(h.cums[i]-prev, 1)
			return time.Duration((lo + (b-lo)*f) * float64(time.Second)).Round(time.Microsecond).String()
		}
		lo, prev = b, h.cums[i]
	}
	return "-"
}

func pct(sorted []time.Duration, p int) string {
	if len(sorted) == 0 {
		return "-"
	}
	i := min(len(sorted)*p/100, len(sorted)-1)
	return sorted[i].Round(time.Microsecond).String()
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func joinF(v []float64) string {
	var parts []string
	for _, x := range v {
		parts = append(parts, strconv.FormatFloat(x, 'f', 0, 64))
	}
	return strings.Join(parts, ", ")
}

// pin puts every thread of process pid on one CPU (taskset from
// util-linux; threads started later inherit it).
func pin(pid, cpu int) error {
	if out, err := exec.Command("taskset", "-a", "-cp", strconv.Itoa(cpu), strconv.Itoa(pid)).CombinedOutput(); err != nil {
		return fmt.Errorf("taskset %d to CPU %d: %w: %s", pid, cpu, err, out)
	}
	return nil
}

func (b *bench) close() {
	if b.stopDNS != nil {
		b.stopDNS()
	}
	if b.ha != nil {
		_ = b.ha.Close()
	}
}

// cpuProfile fetches a CPU profile of the node's fqdngate for d.
func cpuProfile(n *lab.HANode, d time.Duration, file string) error {
	c := n.APIClient()
	c.Timeout = d + 10*time.Second
	resp, err := c.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", lab.HAAPI, int(d.Seconds())))
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile: %s", resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

// procCPU is a process's user and system time (/proc/PID/stat fields 14
// and 15, in USER_HZ, 100 a second on Linux).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command may hold spaces: fields count from after its ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %v %v", pid, err1, err2)
	}
	return time.Duration(u+st) * 10 * time.Millisecond, nil
}
