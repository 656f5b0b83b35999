package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/bench/verify/report"
)

func TestParseResperf(t *testing.T) {
	for _, c := range []struct {
		name      string
		out       string
		qps, lost float64
		err       bool
	}{
		{"statistics", "Statistics:\n\n  Queries sent:         500000\n  Run time (s):         10.979679\n  Maximum throughput:   57526.000000 qps\n  Lost at that point:   0.03%\n", 57526, 0.03, false},
		{"no answers at all", "  Maximum throughput:   0.000000 qps\n  Lost at that point:   100.00%\n", 0, 100, false},
		{"cut short", "[Status] Sending\n", 0, 0, true},
		{"throughput without its loss", "  Maximum throughput:   100.000000 qps\n", 0, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			qps, lost, err := parseResperf([]byte(c.out))
			if (err != nil) != c.err || qps != c.qps || lost != c.lost {
				t.Errorf("got %v qps, %v%% lost, error %v; want %v, %v, error %v", qps, lost, err, c.qps, c.lost, c.err)
			}
		})
	}
}

func TestParseRSS(t *testing.T) {
	for _, c := range []struct {
		name, status string
		want         int64
		err          bool
	}{
		{"status", "Name:\tfqdngate\nVmPeak:\t 1300000 kB\nVmRSS:\t  113948 kB\nRssAnon:\t  100000 kB\n", 113948 << 10, false},
		{"no VmRSS (a kernel thread)", "Name:\tkworker/0:2\nState:\tI (idle)\n", 0, true},
		{"damaged", "VmRSS:\t many kB\n", 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseRSS([]byte(c.status))
			if (err != nil) != c.err || got != c.want {
				t.Errorf("got %d, error %v; want %d, error %v", got, err, c.want, c.err)
			}
		})
	}
}

func TestReadGoBench(t *testing.T) {
	out := `BenchmarkMatch50k-2   	12334024	       196.9 ns/op	       3 B/op	       0 allocs/op
PASS
BenchmarkLedgerRecord-2          	  696430	      2971 ns/op	     592 B/op	       5 allocs/op
BenchmarkLedgerBytesPerEntry-2   	       2	1485736481 ns/op	       192.2 bytes/entry	352089984 B/op	 1262747 allocs/op
`
	path := filepath.Join(t.TempDir(), "gobench.txt")
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := readGoBench(path)
	if err != nil {
		t.Fatal(err)
	}
	if !g.haveMatch || g.matchNs != 196.9 || !g.haveLedger || g.ledgerBytes != 192.2 || g.text != out {
		t.Errorf("got %+v", g)
	}
	if g, err := readGoBench(""); err != nil || g.haveMatch || g.haveLedger {
		t.Errorf("no file: got %+v, %v", g, err)
	}
	if _, err := readGoBench(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing file: no error")
	}

	// bench/run.sh's /proc/stat lines around the benchmarks: 100 of 1,000
	// ticks stolen is 10%, and the lines are not part of the text.
	withStat := "before: cpu  100 0 100 700 0 0 0 100 0 0\n" + out + "after: cpu  300 0 200 1300 0 0 0 200 0 0\n"
	if err := os.WriteFile(path, []byte(withStat), 0o600); err != nil {
		t.Fatal(err)
	}
	g, err = readGoBench(path)
	if err != nil || !g.stealOK || g.steal != 10 || g.text != out {
		t.Errorf("with /proc/stat lines: got %+v, %v", g, err)
	}
	var b strings.Builder
	writeTargets(&b, nil, g, nil)
	if want := "(197 ns a lookup), met, in doubt: the hypervisor took 10% of the CPUs (steal) while the Go benchmarks ran."; !strings.Contains(b.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, b.String())
	}
	// A damaged line is an error that names the file.
	if err := os.WriteFile(path, []byte("before: cpu  x\n"+out), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readGoBench(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("a damaged /proc/stat line: got %v", err)
	}
}

// TestTargets checks the verdicts the report prints from a run's rows.
func TestTargets(t *testing.T) {
	run := []row{
		{name: "dnsmasq", uniqueQPS: 30000, cachedQPS: 70000},
		{name: "dnsmasq --nftset", uniqueQPS: 4000},
		{name: "unbound (1 thread)", uniqueQPS: 16000, cachedQPS: 50000},
		{name: "dnsdist", uniqueQPS: 80000, p99: 500 * time.Microsecond},
		{name: nameNone, uniqueQPS: 40000, cachedQPS: 120000},
		{name: nameEnforce, uniqueQPS: 24000, p99: 900 * time.Microsecond, installP99: 250 * time.Microsecond},
	}
	// The second run lacks some servers; its answer→kernel p99 is read as
	// the run's table prints it, rounded to the microsecond.
	run2 := slices.Clone(run[3:])
	run2[2].installP99 = 186700 * time.Nanosecond
	var b strings.Builder
	writeTargets(&b, [][]row{run, run2}, goBench{haveMatch: true, matchNs: 250, haveLedger: true, ledgerBytes: 192}, nil)
	got := b.String()
	for _, want := range []string{
		"| unique mix, nftables enforce vs dnsmasq --nftset | ≥ 4× | 6.00× met | - |",
		"| unique mix, nftables enforce vs plain dnsmasq | ≥ 1.0× | 0.80× **not met** | - |",
		"| unique mix, backend none vs dnsdist | ≥ 0.7× | 0.50× **not met** | 0.50× **not met** |",
		"| cached mix, backend none vs unbound (1 thread) | ≥ 1.0× | 2.40× met | - |",
		"| p99 at the fixed rate, enforce vs dnsdist | ≤ 2× | 1.80× met | 1.80× met |",
		"| answer→kernel p99 at the fixed rate | ≤ 200 µs | 250 µs **not met** | 187 µs met |",
		"goal ≤ 200: 192.0, met.",
		"goal ≥ 5 M lookups/s: 4.0 M/s (250 ns a lookup), **not met**.",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "in doubt") {
		t.Errorf("a verdict in doubt without steal:\n%s", got)
	}

	// Steal of 5% or more in a run a figure comes from puts its verdict
	// in doubt; steal in a run it does not come from, or below the limit,
	// does not.
	run[3].cpu = cpuUse{steal: 16, ok: true}          // dnsdist's maximum-rate run
	run[5].cpu = cpuUse{steal: 4.9, ok: true}         // enforcing's: under the limit
	run[5].fixedSteal, run[5].fixedStealOK = 18, true // enforcing's fixed-rate runs
	b.Reset()
	writeTargets(&b, [][]row{run}, goBench{}, nil)
	got = b.String()
	for _, want := range []string{
		"| unique mix, nftables enforce vs plain dnsmasq | ≥ 1.0× | 0.80× **not met** |",
		"| unique mix, backend none vs dnsdist | ≥ 0.7× | 0.50× **not met**, in doubt: steal 16% in dnsdist's runs |",
		"| p99 at the fixed rate, enforce vs dnsdist | ≤ 2× | 1.80× met, in doubt: steal 18% in " + nameEnforce + "'s runs |",
		"| answer→kernel p99 at the fixed rate | ≤ 200 µs | 250 µs **not met**, in doubt: steal 18% in " + nameEnforce + "'s runs |",
		"| cached mix, backend none vs unbound (1 thread) | ≥ 1.0× | 2.40× met |",
		"A verdict in doubt comes from runs in which the hypervisor took 5% of CPU 0 or more",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
}

func TestRampTop(t *testing.T) {
	for _, c := range []struct {
		qps  float64
		want int
	}{
		{30000, 45000},   // 1.5 times the closed-loop maximum
		{2000, 5000},     // never below 5,000
		{0, 5000},        // a server that answered nothing
		{400000, 250000}, // capped by -ramp-max
	} {
		if got := rampTop(c.qps); got != c.want {
			t.Errorf("rampTop(%v) = %d, want %d", c.qps, got, c.want)
		}
	}
}

// TestVerifySection: bench/verify's figures make a section of the report
// and two lines of its Targets.
func TestVerifySection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "verify.json")
	r := report.Report{HelloBytes: 1512, Clients: 32, Duration: 5 * time.Second, Sequential: 2000, Modes: []report.Mode{
		{Verify: "off", Rate: 36000, P50: 15 * time.Microsecond, P99: 60 * time.Microsecond},
		{Verify: "enforce", Rate: 21000, UserUS: 15, SysUS: 25, P50: 150 * time.Microsecond, P99: 250 * time.Microsecond},
	}}
	if err := r.Write(path); err != nil {
		t.Fatal(err)
	}
	v, err := readVerify(path)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	writeTargets(&b, nil, goBench{}, v)
	writeVerify(&b, v)
	for _, want := range []string{
		"- Flow verification (below), verified new flows per second on one core (fqdngate's CPU time per flow, pinned), goal ≥ 20000: 25000 (21000 flows/s reached with 32 clients), met.",
		"- Flow verification (below), added to the first byte at p99, enforce vs off in the same run, goal ≤ 100 µs: 190 µs, **not met**.",
		"## Flow verification (bench/verify",
		"| enforce | 21000 |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
	if v, err := readVerify(""); v != nil || err != nil {
		t.Errorf("no -verify: %v, %v", v, err)
	}
}
