// Command harness runs the DNS benchmarks of bench/RESULTS.md: fqdngate
// (nftables and backend none) against dnsmasq, dnsmasq --nftset, unbound
// (1 thread) and dnsdist, all forwarding to the same fixed upstream, in a
// network namespace of its own, loopback only. The server under test is
// pinned to CPU 0; dnsperf and the upstream to CPU 1. Per server it
// measures the maximum rate (dnsperf, closed loop), latency at a fixed
// rate, a ramp (resperf, open loop) and memory, and it checks every run
// against the targets of the report.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/lab"
)

const (
	serverAddr   = "127.0.0.2"
	upstreamAddr = "127.0.0.53:5300"
)

type server struct {
	name  string
	start func(dir string, cached bool) *exec.Cmd
	// pre runs before start (the nftset table).
	pre func() error
}

var (
	ns       *lab.NS
	bin      = flag.String("bin", "bin", "directory with fqdngate and bench-upstream")
	out      = flag.String("out", "bench/RESULTS.md", "report to write")
	duration = flag.Duration("duration", 10*time.Second, "length of each max-qps run")
	rate     = flag.Int("rate", 2000, "fixed rate (qps) for the latency runs: below every server's maximum, so that latency is service time, not queueing")
	runs     = flag.Int("runs", 2, "runs of the whole matrix, to show the noise")
	only     = flag.String("only", "", "run only the servers whose name contains this (profiling)")
	profile  = flag.String("profile", "", "directory for fqdngate's CPU profiles of each maximum-rate run and execution traces of each fixed-rate run (go tool pprof / go tool trace)")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	for _, tool := range []string{"dnsperf", "resperf", "dnsmasq", "unbound", "dnsdist", "taskset", "nft", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: apt-get install -y dnsperf dnsmasq-base unbound dnsdist util-linux nftables iproute2 (resperf comes with dnsperf)", tool)
		}
	}
	var err error
	if ns, err = lab.NewNS("bench"); err != nil {
		return err
	}
	defer ns.Delete()
	dir, err := os.MkdirTemp("", "fqdngate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	uniq, cached := filepath.Join(dir, "unique.txt"), filepath.Join(dir, "cached.txt")
	fixedAfter = filepath.Join(dir, "fixed-after.txt")
	if err := writeQueries(uniq, 2_000_000, "u", "AAAA"); err != nil {
		return err
	}
	if err := writeQueries(cached, 1000, "c", "AAAA"); err != nil {
		return err
	}
	// The fixed-rate runs' names: unique too, and none asked before.
	for i := range fixed {
		fixed[i] = filepath.Join(dir, fmt.Sprintf("fixed-%d.txt", i+1))
		if err := writeQueries(fixed[i], 10*(*rate), fmt.Sprintf("f%d-", i+1), "AAAA"); err != nil {
			return err
		}
	}
	if err := writeQueries(fixedAfter, 10*(*rate), "g", "AAAA"); err != nil {
		return err
	}
	rampFile = filepath.Join(dir, "ramp.txt")
	if err := writeQueries(rampFile, rampNames(), "r", "AAAA"); err != nil {
		return err
	}
	gb, err := readGoBench(*goBenchF)
	if err != nil {
		return err
	}
	vr, err := readVerify(*verifyF)
	if err != nil {
		return err
	}
	up := ns.Command("taskset", "-c", "1", filepath.Join(*bin, "bench-upstream"), "-listen", upstreamAddr, "-sockets", "2")
	if err := up.Start(); err != nil {
		return err
	}
	defer up.Process.Kill()
	if err := waitDNS(upstreamAddr); err != nil {
		return fmt.Errorf("upstream: %w", err)
	}

	var report strings.Builder
	machine(&report)
	servers := serversIn(dir)
	var all [][]row
	for r := 1; r <= *runs; r++ {
		fmt.Fprintf(os.Stderr, "run %d/%d\n", r, *runs)
		upQPS, _, err := dnsperf(upstreamAddr, uniq, *duration, 0)
		if err != nil {
			return err
		}
		upTop := rampTop(upQPS)
		upRamp, _, err := ramp(upstreamAddr, rampFile, upTop)
		if err != nil {
			return err
		}
		var rows []row
		for _, s := range servers {
			if *only != "" && !strings.Contains(s.name, *only) && s.name != "dnsmasq" {
				continue
			}
			fmt.Fprintf(os.Stderr, "  %s\n", s.name)
			rw, err := measure(s, dir, uniq, cached)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			rows = append(rows, rw)
		}
		writeRun(&report, r, upQPS, rows)
		writeMemory(&report, upRamp, upTop, rows)
		writeCPU(&report, rows)
		writeBreakdown(&report, rows)
		all = append(all, rows)
	}
	writeTargets(&report, all, gb, vr)
	writeVerify(&report, vr)
	if gb.text != "" {
		fmt.Fprintf(&report, "## Go benchmarks (go test -bench, this machine)\n\n```\n%s```\n", gb.text)
	}
	if err := os.WriteFile(*out, []byte(report.String()), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: wrote %s\n", *out)
	return nil
}

type row struct {
	name                 string
	uniqueQPS, cachedQPS float64
	p50, p99             time.Duration   // fixed rate, fresh server: the medians of the runs
	p99s                 []time.Duration // each fresh run's p99, in order
	p99Filled            time.Duration   // fixed rate, after the maximum rate
	// answer→kernel at the fixed rate, and p99 at the maximum rate.
	installP50, installP99, installMaxP99 time.Duration
	lost                                  float64
	// The resperf ramp on a fresh server: highest rate kept up with,
	// and the share lost then.
	rampQPS, rampLost float64
	rampTop           int
	// RSS of the fresh server and right after its maximum-rate run.
	rssFresh, rssMax int64
	// fqdngate's memory at fillEntries ledger entries.
	filled filled
	// CPU 0 during the maximum-rate run, and fqdngate's profile.
	cpu   cpuUse
	parts breakdown
	// fixedSteal is the share of CPU 0 (percent) the hypervisor took
	// during the fresh server's fixed-rate runs.
	fixedSteal   float64
	fixedStealOK bool
}

// The fixed-rate runs' names: unique, none asked before. The fresh
// server's latency is the median of len(fixed) runs of 5 s: a single
// run's p99 moved by a factor of two from one run to the next here, a
// stall of the virtual machine or of the load side in it (the same
// server, the same binary), which is more than the differences measured.
var (
	fixed      [3]string
	fixedAfter string
	rampFile   string
)

func measure(s server, dir, uniq, cached string) (row, error) {
	rw := row{name: s.name}
	dropTables()
	if s.pre != nil {
		if err := s.pre(); err != nil {
			return rw, err
		}
	}
	start := func(cached bool) (*exec.Cmd, error) {
		cmd := s.start(dir, cached)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		if err := waitDNS(serverAddr + ":53"); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return nil, fmt.Errorf("not answering: %w\n%s", err, stderr.String())
		}
		return cmd, nil
	}
	stop := func(cmd *exec.Cmd) {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	// A fresh server per mix, so that one mix's cache or ledger does not
	// help the other, and no nftables table left from one server: the
	// kernel walks every set with timeouts once a second on the CPU that
	// filled it, and a large one costs whoever runs there next.
	enforcing := strings.HasPrefix(s.name, "fqdngate (nftables")
	cmd, err := start(false)
	if err != nil {
		return rw, err
	}
	var h0, h1, h2 []bucket
	rw.rssFresh, err = rss(cmd.Process.Pid)
	if err == nil && enforcing {
		h0, err = installHistogram()
	}
	// Unique mix: latency at the fixed rate on the fresh server, the
	// maximum rate, then the fixed rate again with what the maximum rate
	// left behind (ledger, caches, kernel sets).
	isFqdngate := strings.HasPrefix(s.name, "fqdngate")
	if err == nil {
		var p50s []time.Duration
		var ticks cpuTicks
		ticks, err = onCPU0(func() error {
			for i, f := range fixed {
				run := func() error {
					p50, p99, err := latency(serverAddr+":53", f)
					p50s, rw.p99s = append(p50s, p50), append(rw.p99s, p99)
					return err
				}
				var err error
				if i == 0 {
					err = profiled(isFqdngate, s.name, "fresh-fixed", "trace?seconds=4", run)
				} else {
					err = run()
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			rw.p50, rw.p99 = median(p50s), median(rw.p99s)
			rw.fixedSteal, rw.fixedStealOK = ticks.stealShare()
		}
	}
	if err == nil && enforcing {
		if h1, err = installHistogram(); err == nil {
			rw.installP50, rw.installP99, err = quantiles(h0, h1)
		}
	}
	if err == nil {
		err = profiled(isFqdngate, s.name, "unique", cpuProfile(), func() error {
			ticks, err := onCPU0(func() error {
				var err error
				rw.uniqueQPS, rw.lost, err = dnsperf(serverAddr+":53", uniq, *duration, 0)
				return err
			})
			rw.cpu = perQuery(ticks, rw.uniqueQPS*duration.Seconds())
			return err
		})
	}
	if err == nil {
		rw.rssMax, err = rss(cmd.Process.Pid)
	}
	if err == nil && enforcing {
		if h2, err = installHistogram(); err == nil {
			_, rw.installMaxP99, err = quantiles(h1, h2)
		}
	}
	if err == nil {
		_, rw.p99Filled, err = latency(serverAddr+":53", fixedAfter)
	}
	if err == nil && isFqdngate {
		rw.filled, err = fill(dir, cmd.Process.Pid)
	}
	stop(cmd)
	dropTables()
	if err != nil {
		return rw, err
	}
	// The cached mix and the ramp, each on a fresh server of its own.
	onFresh := func(cached bool, f func() error) error {
		if s.pre != nil {
			if err := s.pre(); err != nil {
				return err
			}
		}
		cmd, err := start(cached)
		if err != nil {
			return err
		}
		err = f()
		stop(cmd)
		dropTables()
		return err
	}
	err = onFresh(true, func() error {
		return profiled(isFqdngate, s.name, "cached", cpuProfile(), func() error {
			var err error
			rw.cachedQPS, _, err = dnsperf(serverAddr+":53", cached, *duration, 0)
			return err
		})
	})
	if err != nil {
		return rw, err
	}
	rw.rampTop = rampTop(rw.uniqueQPS)
	err = onFresh(false, func() error {
		var err error
		rw.rampQPS, rw.rampLost, err = ramp(serverAddr+":53", rampFile, rw.rampTop)
		return err
	})
	if err != nil || !isFqdngate {
		return rw, err
	}
	// The profile has a run of its own: profiling costs a few percent,
	// and the maximum rate above is measured without it.
	keep := dir
	if *profile != "" {
		keep = *profile
	}
	path := filepath.Join(keep, profileName(s.name, "breakdown.pprof"))
	err = onFresh(false, func() error {
		var err error
		rw.parts, err = profileParts(filepath.Join(*bin, "fqdngate"), path, func() error {
			_, _, err := dnsperf(serverAddr+":53", uniq, *duration, 0)
			return err
		})
		return err
	})
	return rw, err
}

// dropTables deletes the benchmark's nftables tables, if there.
func dropTables() {
	for _, t := range []string{"fqdngate_bench", "dnsmasq_bench"} {
		_ = ns.Command("nft", "delete", "table", "inet", t).Run()
	}
}

func writeQueries(path string, n int, prefix, qtype string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i := range n {
		fmt.Fprintf(w, "%s%d.bench.example %s\n", prefix, i, qtype)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

func waitDNS(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := ns.Do(func() error {
			m := new(dns.Msg)
			m.SetQuestion("probe.bench.example.", dns.TypeA)
			_, _, err := (&dns.Client{Timeout: 300 * time.Millisecond}).Exchange(m, addr)
			return err
		})
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var (
	qpsRe  = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
	lostRe = regexp.MustCompile(`Queries lost:\s+\d+ \(([0-9.]+)%\)`)
)

// dnsperf runs the load generator on CPU 1 and returns qps and the share
// of queries lost. qps 0 means as fast as the server answers; d 0, once
// through the file.
func dnsperf(addr, file string, d time.Duration, qps int) (float64, float64, error) {
	host, port, _ := strings.Cut(addr, ":")
	args := []string{"-c", "1", "dnsperf", "-s", host, "-p", port, "-d", file, "-c", "32", "-q", "100", "-t", "1", "-T", "1"}
	if d > 0 {
		args = append(args, "-l", strconv.Itoa(int(d.Seconds())))
	} else {
		args = append(args, "-n", "1")
	}
	if qps > 0 {
		args = append(args, "-Q", strconv.Itoa(qps))
	}
	out, err := ns.Command("taskset", args...).CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("dnsperf: %v\n%s", err, out)
	}
	m := qpsRe.FindSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("dnsperf output:\n%s", out)
	}
	q, _ := strconv.ParseFloat(string(m[1]), 64)
	var lost float64
	if l := lostRe.FindSubmatch(out); l != nil {
		lost, _ = strconv.ParseFloat(string(l[1]), 64)
	}
	return q, lost, nil
}

var latRe = regexp.MustCompile(`> (?:NOERROR|NXDOMAIN|SERVFAIL|REFUSED) \S+ \S+ ([0-9.]+)`)

// median is the middle of ds (the upper one of an even count).
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// latency runs a fixed rate with per-query output and returns p50, p99.
func latency(addr, file string) (time.Duration, time.Duration, error) {
	host, port, _ := strings.Cut(addr, ":")
	out, err := ns.Command("taskset", "-c", "1", "dnsperf", "-s", host, "-p", port, "-d", file, "-l", "5",
		"-Q", strconv.Itoa(*rate), "-c", "8", "-T", "1", "-v").CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("dnsperf -v: %v", err)
	}
	var lat []float64
	for _, m := range latRe.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		lat = append(lat, v)
	}
	if len(lat) == 0 {
		return 0, 0, fmt.Errorf("no latencies in dnsperf -v output")
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration {
		return time.Duration(lat[int(p*float64(len(lat)-1))] * float64(time.Second))
	}
	return q(0.50), q(0.99), nil
}
