package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/fqdngate/fqdngate/bench/verify/report"
)

// The ramp: resperf raises the query rate from zero to a top over
// rampTime, open loop (it does not wait for answers, as dnsperf does), so
// that it finds the rate at which a server starts to lose queries rather
// than how fast it answers 100 outstanding ones. Each server's top is
// rampOver times its closed-loop maximum of the same run: resperf measures
// in steps of rampStep, and with one ramp for all a step was 5,000 qps,
// more than the whole rate of the slower servers.
var (
	rampCap  = flag.Int("ramp-max", 250000, "highest top of a resperf ramp (qps)")
	rampTime = flag.Duration("ramp-time", 12*time.Second, "length of the resperf ramp")
)

const (
	rampOver = 1.5
	rampStep = 250 * time.Millisecond
)

// rampTop is the ramp's top for a server of closed-loop rate qps.
func rampTop(qps float64) int { return min(*rampCap, max(5000, int(rampOver*qps))) }

// rampLoss is the share of lost queries up to which resperf counts a rate
// as kept up with.
const rampLoss = 2

var (
	rampMaxRe  = regexp.MustCompile(`Maximum throughput:\s+([0-9.]+)`)
	rampLostRe = regexp.MustCompile(`Lost at that point:\s+([0-9.]+)%`)
)

// ramp runs resperf on CPU 1 against addr with the names of file (each
// asked once), up to top qps, and returns the highest rate of responses
// over a step in which no more than rampLoss percent of the queries were
// lost, and the share lost in that step. Its receive buffer is raised
// (16 MiB): with the default, resperf itself, sharing CPU 1 with the
// upstream, dropped the answers.
func ramp(addr, file string, top int) (qps, lost float64, err error) {
	host, port, _ := strings.Cut(addr, ":")
	out, err := ns.Command("taskset", "-c", "1", "resperf", "-s", host, "-p", port, "-d", file,
		"-m", strconv.Itoa(top), "-r", strconv.Itoa(int(rampTime.Seconds())), "-c", "0",
		"-i", strconv.FormatFloat(rampStep.Seconds(), 'f', -1, 64),
		"-t", "1", "-L", strconv.Itoa(rampLoss), "-b", "16384", "-P", os.DevNull).CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("resperf: %v\n%s", err, out)
	}
	return parseResperf(out)
}

// parseResperf reads resperf's statistics.
func parseResperf(out []byte) (qps, lost float64, err error) {
	m := rampMaxRe.FindSubmatch(out)
	l := rampLostRe.FindSubmatch(out)
	if m == nil || l == nil {
		return 0, 0, fmt.Errorf("no maximum throughput in the resperf output:\n%s", out)
	}
	qps, _ = strconv.ParseFloat(string(m[1]), 64)
	lost, _ = strconv.ParseFloat(string(l[1]), 64)
	return qps, lost, nil
}

// rampNames is how many names a ramp asks: the area under the ramp.
func rampNames() int { return int(float64(*rampCap)*rampTime.Seconds()/2) + 1000 }

// rss is a process's resident set (VmRSS) in bytes.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseRSS(b)
}

// parseRSS reads VmRSS from the text of /proc/PID/status.
func parseRSS(status []byte) (int64, error) {
	for line := range bytes.Lines(status) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(string(rest)), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS: %w", err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in the process status")
}

var ledgerRe = regexp.MustCompile(`(?m)^fqdngate_ledger_entries ([0-9.e+]+)$`)

// ledgerEntries reads fqdngate's ledger size from its metrics.
func ledgerEntries() (int, error) {
	body, err := apiGet("/metrics", 5*time.Second)
	if err != nil {
		return 0, err
	}
	m := ledgerRe.FindSubmatch(body)
	if m == nil {
		return 0, fmt.Errorf("no fqdngate_ledger_entries in the metrics")
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	return int(v), err
}

// fillEntries is the ledger size at which the report reads fqdngate's
// memory.
const fillEntries = 1_000_000

// filled is fqdngate's memory with at least fillEntries in its ledger.
type filled struct {
	entries int
	rss     int64
}

// fill asks names not asked before, as fast as the server answers, until
// fqdngate's ledger holds at least fillEntries entries, and reads the
// process's RSS then.
func fill(dir string, pid int) (filled, error) {
	for round := range 6 {
		n, err := ledgerEntries()
		if err != nil {
			return filled{}, err
		}
		if n >= fillEntries {
			r, err := rss(pid)
			return filled{entries: n, rss: r}, err
		}
		// Answers carry two to four addresses: enough names for two each.
		file := filepath.Join(dir, fmt.Sprintf("fill-%d.txt", round))
		if err := writeQueries(file, (fillEntries-n)/2+1000, fmt.Sprintf("m%d-", round), "AAAA"); err != nil {
			return filled{}, err
		}
		if _, _, err := dnsperf(serverAddr+":53", file, 0, 0); err != nil {
			return filled{}, err
		}
	}
	return filled{}, fmt.Errorf("the ledger stayed under %d entries", fillEntries)
}

func mb(b int64) string { return fmt.Sprintf("%.0f MB", float64(b)/1e6) }

// writeMemory writes a run's ramp and memory table.
func writeMemory(w io.Writer, upRamp float64, upTop int, rows []row) {
	base, _ := find(rows, "dnsmasq")
	fmt.Fprintf(w, "Ramp (resperf on a fresh server, open loop, names not asked before: the rate rises from 0 to %.1f times the server's maximum above over %s; the highest rate of answers over a %s step that lost at most %d%%) and memory. The upstream alone: %.0f qps on a ramp to %d.\n\n",
		rampOver, *rampTime, rampStep, rampLoss, upRamp, upTop)
	fmt.Fprintf(w, "| server | ramp: highest rate with ≤ %d%% lost | vs dnsmasq | lost in that step | top of the ramp | RSS fresh | RSS after the max run |\n", rampLoss)
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	var limited, topped []string
	for _, r := range rows {
		if r.rampQPS >= 0.8*upRamp {
			limited = append(limited, r.name)
		}
		if r.rampQPS >= 0.95*float64(r.rampTop) {
			topped = append(topped, r.name)
		}
		fmt.Fprintf(w, "| %s | %.0f | %s | %.2f%% | %d | %s | %s |\n", r.name, r.rampQPS, ratio(r.rampQPS, base.rampQPS), r.rampLost, r.rampTop, mb(r.rssFresh), mb(r.rssMax))
	}
	fmt.Fprintln(w)
	if len(limited) > 0 {
		fmt.Fprintf(w, "Within 20%% of the upstream alone on the ramp, so limited by the load side there: %s.\n\n", strings.Join(limited, ", "))
	}
	if len(topped) > 0 {
		fmt.Fprintf(w, "Kept up to the top of the ramp, so the ramp, not the server, ended there: %s.\n\n", strings.Join(topped, ", "))
	}
	for _, r := range rows {
		if r.filled.entries == 0 {
			continue
		}
		fmt.Fprintf(w, "%s with %d ledger entries (new names asked after the runs above until the ledger held %d): RSS %s, %.0f bytes per entry over the fresh server's RSS (the ledger, the DNS cache, the map of what the kernel holds and the Go heap's slack together; the ledger alone is in `BenchmarkLedgerBytesPerEntry` below).\n\n",
			r.name, r.filled.entries, fillEntries, mb(r.filled.rss), float64(r.filled.rss-r.rssFresh)/float64(r.filled.entries))
	}
}

// goBench is what the report's targets need from the Go benchmarks.
type goBench struct {
	text        string
	matchNs     float64 // BenchmarkMatch50k, ns a lookup
	ledgerBytes float64 // BenchmarkLedgerBytesPerEntry
	// haveMatch and haveLedger: found in the output.
	haveMatch, haveLedger bool
	// steal is the share of the machine's CPU (percent) the hypervisor
	// took while they ran, from the "before:" and "after:" lines of
	// /proc/stat that bench/run.sh writes around them.
	steal   float64
	stealOK bool
}

var (
	matchRe  = regexp.MustCompile(`(?m)^BenchmarkMatch50k\S*\s+\d+\s+([0-9.]+) ns/op`)
	bytesRe  = regexp.MustCompile(`(?m)^BenchmarkLedgerBytesPerEntry\S*\s+\d+\s+[0-9.]+ ns/op\s+([0-9.]+) bytes/entry`)
	goBenchF = flag.String("gobench", "", "output of the Go benchmarks (go test -bench) to include and check against the targets")
)

func readGoBench(path string) (goBench, error) {
	if path == "" {
		return goBench{}, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return goBench{}, err
	}
	var text strings.Builder
	var stat [2]cpuTicks
	var seen [2]bool
	for _, line := range strings.SplitAfter(string(b), "\n") {
		for i, prefix := range []string{"before: ", "after: "} {
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				t, err := parseCPULine([]byte(rest), "cpu")
				if err != nil {
					return goBench{}, fmt.Errorf("%s: %w", path, err)
				}
				stat[i], seen[i] = t, true
				line = ""
			}
		}
		text.WriteString(line)
	}
	g := goBench{text: text.String()}
	if seen[0] && seen[1] {
		g.steal, g.stealOK = stat[1].minus(stat[0]).stealShare()
	}
	if m := matchRe.FindSubmatch(b); m != nil {
		g.matchNs, _ = strconv.ParseFloat(string(m[1]), 64)
		g.haveMatch = true
	}
	if m := bytesRe.FindSubmatch(b); m != nil {
		g.ledgerBytes, _ = strconv.ParseFloat(string(m[1]), 64)
		g.haveLedger = true
	}
	return g, nil
}

var verifyF = flag.String("verify", "", "figures of bench/verify (its -json) to include and check against the targets")

// readVerify reads bench/verify's figures; nil when there are none.
func readVerify(path string) (*report.Report, error) {
	if path == "" {
		return nil, nil
	}
	r, err := report.Read(path)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// writeVerify writes bench/verify's section.
func writeVerify(w io.Writer, v *report.Report) {
	if v == nil {
		return
	}
	fmt.Fprintf(w, "## Flow verification (bench/verify, enforcer.verify off and enforce in one run)\n\n")
	v.WriteTable(w)
}

// target is one of the report's goals, checked in every run.
type target struct {
	what, goal string
	value      func(rows []row) (float64, bool) // false: not measured in that run
	format     func(float64) string
	met        func(float64) bool
	// rows are the servers the figure comes from, and steal the share of
	// CPU 0 the hypervisor took during the runs it comes from (nil: not
	// watched).
	rows  []string
	steal func(row) (float64, bool)
}

func find(rows []row, name string) (row, bool) {
	for _, r := range rows {
		if r.name == name {
			return r, true
		}
	}
	return row{}, false
}

// ratioOf is a over b of field f, when both servers ran.
func ratioOf(a, b string, f func(row) float64) func([]row) (float64, bool) {
	return func(rows []row) (float64, bool) {
		ra, okA := find(rows, a)
		rb, okB := find(rows, b)
		if !okA || !okB || f(rb) == 0 {
			return 0, false
		}
		return f(ra) / f(rb), true
	}
}

const (
	nameEnforce = "fqdngate (nftables, enforce)"
	nameNone    = "fqdngate (backend none)"
	// noneTarget is backend none's goal against dnsdist.
	noneTarget = 0.7
)

var targets = []target{
	{"unique mix, nftables enforce vs dnsmasq --nftset", "≥ 4×", ratioOf(nameEnforce, "dnsmasq --nftset", func(r row) float64 { return r.uniqueQPS }), times, atLeast(4),
		[]string{nameEnforce, "dnsmasq --nftset"}, maxRunSteal},
	{"unique mix, nftables enforce vs plain dnsmasq", "≥ 1.0×", ratioOf(nameEnforce, "dnsmasq", func(r row) float64 { return r.uniqueQPS }), times, atLeast(1),
		[]string{nameEnforce, "dnsmasq"}, maxRunSteal},
	{"unique mix, backend none vs dnsdist", "≥ 0.7×", ratioOf(nameNone, "dnsdist", func(r row) float64 { return r.uniqueQPS }), times, atLeast(noneTarget),
		[]string{nameNone, "dnsdist"}, maxRunSteal},
	// The cached mix's runs are not watched for steal.
	{"cached mix, backend none vs unbound (1 thread)", "≥ 1.0×", ratioOf(nameNone, "unbound (1 thread)", func(r row) float64 { return r.cachedQPS }), times, atLeast(1), nil, nil},
	{"p99 at the fixed rate, enforce vs dnsdist", "≤ 2×", ratioOf(nameEnforce, "dnsdist", func(r row) float64 { return float64(r.p99) }), times, func(v float64) bool { return v <= 2 },
		[]string{nameEnforce, "dnsdist"}, fixedRunSteal},
	{"answer→kernel p99 at the fixed rate", "≤ 200 µs", func(rows []row) (float64, bool) {
		r, ok := find(rows, nameEnforce)
		// Rounded as the run's table prints it, so that both say the same.
		return float64(r.installP99.Round(time.Microsecond).Microseconds()), ok && r.installP99 > 0
	}, func(v float64) string { return fmt.Sprintf("%.0f µs", v) }, func(v float64) bool { return v <= 200 },
		[]string{nameEnforce}, fixedRunSteal},
}

// stealLimit is the share of CPU 0 (percent) the hypervisor may take
// during the runs a figure comes from before the verdict is in doubt:
// the runs that had 8-18% measured the machine, not the servers (one
// server's rate fell to half, its system time per query tripled).
const stealLimit = 5

func maxRunSteal(r row) (float64, bool)   { return r.cpu.steal, r.cpu.ok }
func fixedRunSteal(r row) (float64, bool) { return r.fixedSteal, r.fixedStealOK }

// worstSteal is the most CPU 0 the hypervisor took during the runs t's
// figure comes from, and whose runs they were.
func (t target) worstSteal(rows []row) (float64, string) {
	if t.steal == nil {
		return 0, ""
	}
	worst, who := 0.0, ""
	for _, name := range t.rows {
		r, ok := find(rows, name)
		if !ok {
			continue
		}
		if st, ok := t.steal(r); ok && st > worst {
			worst, who = st, name
		}
	}
	return worst, who
}

func times(v float64) string { return fmt.Sprintf("%.2f×", v) }

func atLeast(x float64) func(float64) bool { return func(v float64) bool { return v >= x } }

// writeTargets checks every run against the targets, and the Go
// benchmarks against theirs.
func writeTargets(w io.Writer, runs [][]row, g goBench, v *report.Report) {
	fmt.Fprintf(w, "## Targets\n\nEach run on its own: a target is met in a run when that run's figures meet it.\n\n")
	fmt.Fprintf(w, "| target | goal |")
	for i := range runs {
		fmt.Fprintf(w, " run %d |", i+1)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "|---|---|%s\n", strings.Repeat("---|", len(runs)))
	doubt := false
	for _, t := range targets {
		fmt.Fprintf(w, "| %s | %s |", t.what, t.goal)
		for _, rows := range runs {
			v, ok := t.value(rows)
			if !ok {
				fmt.Fprintf(w, " - |")
				continue
			}
			fmt.Fprintf(w, " %s %s", t.format(v), verdict(t.met(v)))
			if st, who := t.worstSteal(rows); st >= stealLimit {
				doubt = true
				fmt.Fprintf(w, ", in doubt: steal %.0f%% in %s's runs", st, who)
			}
			fmt.Fprintf(w, " |")
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	if doubt {
		fmt.Fprintf(w, "A verdict in doubt comes from runs in which the hypervisor took %d%% of CPU 0 or more (steal, from /proc/stat: the maximum-rate run for the rates, the fresh server's fixed-rate runs for the latencies): such a run measures the machine, not the server. Run the benchmark again for that target.\n\n", stealLimit)
	}
	if g.haveLedger {
		fmt.Fprintf(w, "- Ledger bytes per entry at 1M entries (`BenchmarkLedgerBytesPerEntry` below), goal ≤ 200: %.1f, %s.\n", g.ledgerBytes, verdict(g.ledgerBytes <= 200))
	}
	if g.haveMatch {
		doubt := ""
		if g.stealOK && g.steal >= stealLimit {
			doubt = fmt.Sprintf(", in doubt: the hypervisor took %.0f%% of the CPUs (steal) while the Go benchmarks ran", g.steal)
		}
		fmt.Fprintf(w, "- Policy matcher at 50,000 patterns on one core (`BenchmarkMatch50k` below), goal ≥ 5 M lookups/s: %.1f M/s (%.0f ns a lookup), %s%s.\n", 1e3/g.matchNs, g.matchNs, verdict(1e3/g.matchNs >= 5), doubt)
	}
	if v != nil {
		for _, t := range v.Targets() {
			doubt := ""
			if t.Doubt != "" {
				doubt = ", in doubt: " + t.Doubt
			}
			fmt.Fprintf(w, "- Flow verification (below), %s, goal %s: %s, %s%s.\n", t.What, t.Goal, t.Value, verdict(t.Met), doubt)
		}
	}
	fmt.Fprintln(w)
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "**not met**"
}
