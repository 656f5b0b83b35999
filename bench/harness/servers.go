package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

func fqdngateConfig(dir, backend string) string {
	path := filepath.Join(dir, "fqdngate-"+backend+".yaml")
	cfg := fmt.Sprintf(`mode: enforce
listen:
  dns: ["%s:53"]
  api: "127.0.0.1:9053"
upstreams: ["%s"]
enforcer:
  backend: %s
  table: fqdngate_bench
  hook: output
  scope: global
  min_ttl: 0s
  grace: 30s
  max_entries: 4000000
clients:
  - name: bench
    cidrs: ["127.0.0.0/8"]
    # dnsperf is one client at tens of thousands of queries a second,
    # with hundreds outstanding: no per-client limits.
    max_qps: 0
    max_inflight: 0
    rules:
      - name: all
        fqdn: ["*.bench.example"]
        ports: ["tcp/443"]
state_dir: ""
log:
  level: error
`, serverAddr, upstreamAddr, backend)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		panic(err)
	}
	return path
}

func pinned(args ...string) *exec.Cmd {
	cmd := ns.Command("taskset", append([]string{"-c", "0"}, args...)...)
	// fqdngate serves its profiles (the breakdown run and -profile); the
	// other servers ignore it.
	cmd.Env = append(os.Environ(), "FQDNGATE_PPROF=1")
	return cmd
}

// profiled runs f while fetching fqdngate's /debug/pprof/<what> into the
// -profile directory (when it is set and the server is fqdngate).
func profiled(isFqdngate bool, server, phase, what string, f func() error) error {
	if *profile == "" || !isFqdngate {
		return f()
	}
	name := profileName(server, phase+".pprof")
	if strings.HasPrefix(what, "trace") {
		name = profileName(server, phase+".trace")
	}
	profErr, err := fetchDuring(filepath.Join(*profile, name), what, f)
	if profErr != nil {
		fmt.Fprintf(os.Stderr, "  profile %s: %v\n", name, profErr)
	}
	return err
}

// fetchDuring runs f while it fetches fqdngate's /debug/pprof/<what> into
// path; it returns the fetch's error and f's.
func fetchDuring(path, what string, f func() error) (fetchErr, err error) {
	done := make(chan error, 1)
	go func() {
		body, err := apiGet("/debug/pprof/"+what, 30*time.Second)
		if err == nil {
			err = os.WriteFile(path, body, 0o644)
		}
		done <- err
	}()
	err = f()
	return <-done, err
}

// cpuProfile is the pprof request of a run of the maximum rate: it starts
// with the run and ends before dnsperf's last queries.
func cpuProfile() string { return fmt.Sprintf("profile?seconds=%d", max(1, int(duration.Seconds())-2)) }

// profileName is the file of a server's profile of a phase.
func profileName(server, phase string) string {
	return strings.NewReplacer(" ", "-", "(", "", ")", "", ",", "").Replace(server) + "-" + phase
}

// apiGet fetches a path of fqdngate's API inside the namespace.
func apiGet(path string, timeout time.Duration) ([]byte, error) {
	dial := func(_ context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() error {
			var err error
			c, err = net.Dial(network, addr)
			return err
		})
		return c, err
	}
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{DialContext: dial}}
	resp, err := c.Get("http://127.0.0.1:9053" + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", path, resp.Status)
	}
	return body, err
}

// The reference forwarders' rows: bench/floor as workers, and with -batch.
const (
	floorName      = "Go floor (forwarding only, reference)"
	floorBatchName = "Go floor, batched I/O (reference)"
)

func serversIn(dir string) []server {
	fq := filepath.Join(*bin, "fqdngate")
	return []server{
		{name: "dnsmasq", start: func(_ string, cached bool) *exec.Cmd { return pinned(dnsmasqArgs(cached)...) }},
		{name: "dnsmasq --nftset", pre: nftsetTable, start: func(_ string, cached bool) *exec.Cmd {
			return pinned(append(dnsmasqArgs(cached), "--nftset=/bench.example/4#inet#dnsmasq_bench#allow4,6#inet#dnsmasq_bench#allow6")...)
		}},
		{name: "unbound (1 thread)", start: func(dir string, _ bool) *exec.Cmd {
			conf := filepath.Join(dir, "unbound.conf")
			os.WriteFile(conf, []byte(fmt.Sprintf(`server:
  interface: %s
  port: 53
  num-threads: 1
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "%s"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "iterator"
  qname-minimisation: no
  msg-cache-size: 256m
  rrset-cache-size: 512m
forward-zone:
  name: "."
  forward-addr: %s
`, serverAddr, dir, strings.Replace(upstreamAddr, ":", "@", 1))), 0o600)
			return pinned("unbound", "-d", "-c", conf)
		}},
		{name: "dnsdist", start: func(dir string, _ bool) *exec.Cmd {
			conf := filepath.Join(dir, "dnsdist.conf")
			os.WriteFile(conf, []byte(fmt.Sprintf("setLocal(%q)\nnewServer({address=%q})\nsetSecurityPollSuffix(\"\")\n", serverAddr+":53", upstreamAddr)), 0o600)
			return pinned("dnsdist", "--supervised", "--disable-syslog", "-C", conf)
		}},
		// Not a product: what a Go forwarder of fqdngate's kind reaches
		// when it does nothing but forward (see bench/floor).
		{name: floorName, start: func(string, bool) *exec.Cmd {
			return pinned(filepath.Join(*bin, "bench-floor"), "-listen", serverAddr+":53", "-upstream", upstreamAddr)
		}},
		// The same with dnsdist's design: would another I/O model raise
		// the floor?
		{name: floorBatchName, start: func(string, bool) *exec.Cmd {
			return pinned(filepath.Join(*bin, "bench-floor"), "-batch", "-listen", serverAddr+":53", "-upstream", upstreamAddr)
		}},
		{name: nameNone, start: func(dir string, _ bool) *exec.Cmd {
			return pinned(fq, "run", "--config", fqdngateConfig(dir, "none"))
		}},
		{name: nameEnforce, start: func(dir string, _ bool) *exec.Cmd {
			return pinned(fq, "run", "--config", fqdngateConfig(dir, "nftables"))
		}},
	}
}

// dnsmasqArgs runs dnsmasq at its best for the mix: its default cache
// (150) for unique names, where a cache of 10,000 costs it nine tenths of
// its rate (3,100 against 30,000 qps here: every new name scans for an
// entry to evict), and 10,000 for the cached mix, so that its 1,000 names
// fit.
func dnsmasqArgs(cached bool) []string {
	cache := "--cache-size=150"
	if cached {
		cache = "--cache-size=10000"
	}
	return []string{"dnsmasq", "-k", "-C", "/dev/null", "--no-resolv", "--no-hosts", "--server=" + strings.Replace(upstreamAddr, ":", "#", 1),
		"--listen-address=" + serverAddr, "--bind-interfaces", "--port=53", cache, "--dns-forward-max=10000", "--user=root", "--log-facility=/dev/null"}
}

// nftsetTable is what dnsmasq --nftset adds to: a table and sets with
// timeouts, as a firewall would have.
func nftsetTable() error {
	cmd := ns.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(`table inet dnsmasq_bench
delete table inet dnsmasq_bench
table inet dnsmasq_bench {
	set allow4 { type ipv4_addr; flags timeout; timeout 5m; }
	set allow6 { type ipv6_addr; flags timeout; timeout 5m; }
}
`)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %v %s", err, out)
	}
	return nil
}

var bucketRe = regexp.MustCompile(`fqdngate_rule_install_duration_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)`)

type bucket struct{ le, n float64 }

// installHistogram reads fqdngate's answer→kernel histogram (cumulative
// buckets, +Inf left out).
func installHistogram() ([]bucket, error) {
	body, err := apiGet("/metrics", 5*time.Second)
	if err != nil {
		return nil, err
	}
	var bs []bucket
	for _, m := range bucketRe.FindAllSubmatch(body, -1) {
		le, err := strconv.ParseFloat(string(m[1]), 64)
		if err != nil {
			continue // +Inf
		}
		n, _ := strconv.ParseFloat(string(m[2]), 64)
		bs = append(bs, bucket{le, n})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if len(bs) == 0 {
		return nil, fmt.Errorf("no install histogram")
	}
	return bs, nil
}

// quantiles interpolates p50 and p99 of what was observed between two
// readings of the histogram (before may be nil).
func quantiles(before, after []bucket) (time.Duration, time.Duration, error) {
	bs := slices.Clone(after)
	for i := range bs {
		if i < len(before) {
			bs[i].n -= before[i].n
		}
	}
	if len(bs) == 0 || bs[len(bs)-1].n == 0 {
		return 0, 0, fmt.Errorf("no installs observed")
	}
	total := bs[len(bs)-1].n
	q := func(p float64) time.Duration {
		target := p * total
		prevLe, prevN := 0.0, 0.0
		for _, b := range bs {
			if b.n >= target {
				frac := (target - prevN) / max(b.n-prevN, 1)
				return time.Duration((prevLe + frac*(b.le-prevLe)) * float64(time.Second))
			}
			prevLe, prevN = b.le, b.n
		}
		return time.Duration(bs[len(bs)-1].le * float64(time.Second))
	}
	return q(0.50), q(0.99), nil
}

func cmdOut(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return "(not available)"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

func machine(w io.Writer) {
	cpu := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if m := regexp.MustCompile(`model name\s*:\s*(.*)`).FindSubmatch(b); m != nil {
			cpu = string(m[1])
		}
	}
	fmt.Fprintf(w, "# Benchmarks\n\nWritten by `sudo make bench` (bench/run.sh) on %s. Do not edit: run it again.\n\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "## Machine and tools\n\n")
	fmt.Fprintf(w, "- %d CPUs (%s), kernel %s, %s\n", runtime.NumCPU(), cpu, cmdOut("uname", "-r"), runtime.Version())
	fmt.Fprintf(w, "- %s; %s; %s; %s; %s\n", cmdOut("dnsmasq", "-v"), cmdOut("unbound", "-V"), cmdOut("dnsdist", "--version"), dnsperfVersion(), cmdOut("nft", "--version"))
	fmt.Fprintf(w, "- Pinning: the server under test on CPU 0 (`taskset -c 0`); dnsperf and the upstream on CPU 1. ")
	fmt.Fprintf(w, "All traffic on loopback inside a network namespace of the run.\n")
	fmt.Fprintf(w, "- Unique mix: every query a new name under `*.bench.example` (AAAA, a CNAME and 2-4 addresses in 2001:db8::/32 per answer), so every query reaches the upstream and, for fqdngate with nftables, the kernel. ")
	fmt.Fprintf(w, "Cached mix: 1,000 names asked over and over. Each max-qps run: %s, dnsperf with 32 clients and 100 queries outstanding (dnsperf's default), 1 s timeout. Latency: %d qps for 5 s on names of the unique mix not asked before, from `dnsperf -v`, a rate below every server's maximum so that it shows service time, not queueing; three times on the fresh server (p50 and p99 are the medians of the three runs, each run's p99 is shown beside them: one run's p99 moved by up to a factor of two here from one run to the next, the same server and binary), once after its maximum-rate run (its ledger, caches and kernel sets full of that run's answers). Every nftables table of the run is deleted between servers. answer→kernel is fqdngate's own histogram (`fqdngate_rule_install_duration_seconds`: upstream answer in hand → kernel acknowledged its elements), read before and after each run.\n", *duration, *rate)
	fmt.Fprintf(w, "- Ramp: `resperf` on CPU 1, on a fresh server, open loop (it does not wait for answers), each name asked once; the rate rises from 0 to %.1f times the server's closed-loop maximum of the same run over %s, and the figure is the highest rate of answers over a %s step in which no more than %d%% of the queries were lost (resperf's maximum throughput). Memory: the server's VmRSS when fresh and right after its maximum-rate run; fqdngate is then asked new names until its ledger holds %d entries or more, and its RSS read again.\n", rampOver, *rampTime, rampStep, rampLoss, fillEntries)
	fmt.Fprintf(w, "- fqdngate: `hook: output`, `scope: global`, `min_ttl: 0s`, `grace: 30s`, persistence off (`state_dir: \"\"`), log level error. dnsmasq: its default cache (150) for the unique mix (with 10,000 it reached only about 3,100 qps on unique names, a tenth of its rate: each new name scans its cache for an entry to evict) and 10,000 for the cached mix; `--nftset` adds every answer to nftables sets (one `nft` netlink exchange per answer). unbound: 1 thread, iterator only. dnsdist: no packet cache.\n")
	fmt.Fprintf(w, "- %s: bench/floor, not a product: 128 goroutines, each reading the listening socket itself and keeping one upstream socket, doing fqdngate's four UDP system calls per query and its miekg/dns unpacking of query and reply and packing of the reply, and nothing else (no policy, cache, ledger, firewall, metrics, timeouts). It bounds what a forwarder built on Go's net package and miekg/dns reaches on one core here; it has no cache, so its cached mix is forwarding too.\n", floorName)
	fmt.Fprintf(w, "- %s: bench/floor -batch, the same work built as dnsdist is: one goroutine reads queries with recvmmsg and sends them upstream with sendmmsg on one socket, another reads the replies with recvmmsg and sends them to the clients with sendmmsg, a table of outstanding IDs between them. It tells whether batching the system calls and leaving the goroutine per query would raise the floor.\n\n", floorBatchName)
}

func writeRun(w io.Writer, n int, upQPS float64, rows []row) {
	base, _ := find(rows, "dnsmasq")
	fmt.Fprintf(w, "## Run %d\n\nThe upstream alone, on the unique mix, with dnsperf on the same CPU: %.0f qps.", n, upQPS)
	var limited []string
	for _, r := range rows {
		if r.uniqueQPS >= 0.8*upQPS {
			limited = append(limited, r.name)
		}
	}
	if len(limited) > 0 {
		fmt.Fprintf(w, " Within 20%% of it: %s; there the load side (dnsperf and the upstream on CPU 1), not the server, is the limit.", strings.Join(limited, ", "))
	} else {
		fmt.Fprintf(w, " Every server stays below 80%% of it: the servers, not the load side, are measured.")
	}
	fmt.Fprintf(w, "\n\n")
	dnsdist, _ := find(rows, "dnsdist")
	fmt.Fprintf(w, "| server | unique qps | vs dnsmasq | lost | cached qps | vs dnsmasq | p50 at %d qps | p99 | p99 of each run (µs) | p99 vs dnsdist | p99 after the max run | answer→kernel p50 at %d qps | p99 | p99 at max qps |\n", *rate, *rate)
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	var saturated []string
	for _, r := range rows {
		inst50, inst99, instMax := "-", "-", "-"
		if r.installP50 > 0 {
			inst50, inst99 = r.installP50.Round(time.Microsecond).String(), r.installP99.Round(time.Microsecond).String()
		}
		if r.installMaxP99 > 0 {
			instMax = r.installMaxP99.Round(time.Microsecond).String()
		}
		if r.uniqueQPS < float64(*rate) {
			saturated = append(saturated, r.name)
		}
		var each []string
		for _, d := range r.p99s {
			each = append(each, strconv.FormatInt(d.Microseconds(), 10))
		}
		fmt.Fprintf(w, "| %s | %.0f | %s | %.1f%% | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.name, r.uniqueQPS, ratio(r.uniqueQPS, base.uniqueQPS), r.lost,
			r.cachedQPS, ratio(r.cachedQPS, base.cachedQPS), r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), strings.Join(each, " / "),
			ratio(float64(r.p99), float64(dnsdist.p99)), r.p99Filled.Round(time.Microsecond), inst50, inst99, instMax)
	}
	fmt.Fprintln(w)
	if len(saturated) > 0 {
		fmt.Fprintf(w, "Below the fixed rate of %d qps on the unique mix, so their latency there is queueing: %s.\n\n", *rate, strings.Join(saturated, ", "))
	}
}

// ratio is v over b as the report prints it; "-" without b.
func ratio(v, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", v/b)
}

func dnsperfVersion() string {
	out, _ := exec.Command("dnsperf", "-h").CombinedOutput()
	if m := regexp.MustCompile(`(?i)version\s+([0-9.]+)`).FindSubmatch(out); m != nil {
		return "dnsperf " + string(m[1])
	}
	return "dnsperf (version not printed)"
}
