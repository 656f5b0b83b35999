package main

import (
	"math"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestParseCPU(t *testing.T) {
	stat := "cpu  500 10 300 9000 5 0 40 7 0 0\ncpu0 250 5 150 4500 3 1 20 4 0 0\ncpu1 250 5 150 4500 2 0 20 3 0 0\nintr 12345\n"
	for _, c := range []struct {
		name, stat string
		cpu        int
		want       cpuTicks
		err        bool
	}{
		{"cpu0", stat, 0, cpuTicks{user: 255, system: 150, idle: 4503, irq: 21, steal: 4}, false},
		{"cpu1, not the total line", stat, 1, cpuTicks{user: 255, system: 150, idle: 4502, irq: 20, steal: 3}, false},
		{"no such CPU", stat, 2, cpuTicks{}, true},
		{"an old kernel's short line", "cpu0 1 2 3 4\n", 0, cpuTicks{}, true},
		{"damaged counter", "cpu0 1 2 x 4 5 6 7 8\n", 0, cpuTicks{}, true},
		{"empty", "", 0, cpuTicks{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseCPU([]byte(c.stat), c.cpu)
			if (err != nil) != c.err || got != c.want {
				t.Errorf("got %+v, error %v; want %+v, error %v", got, err, c.want, c.err)
			}
		})
	}
}

func TestPerQuery(t *testing.T) {
	// 10 s of CPU 0 (1000 ticks) answering 200,000 queries: 2 s of user
	// time is 10 µs a query.
	d := cpuTicks{user: 200, system: 500, irq: 100, idle: 150, steal: 50}
	got := perQuery(d, 200_000)
	want := cpuUse{user: 10, system: 25, irq: 5, idle: 15, steal: 5, ok: true}
	const eps = 1e-9
	if !got.ok || math.Abs(got.user-want.user) > eps || math.Abs(got.system-want.system) > eps || math.Abs(got.irq-want.irq) > eps ||
		math.Abs(got.idle-want.idle) > eps || math.Abs(got.steal-want.steal) > eps {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if u := perQuery(d, 0); u.ok {
		t.Errorf("no queries answered: got %+v, want no figures", u)
	}
	if u := perQuery(cpuTicks{}, 100); u.ok {
		t.Errorf("no ticks: got %+v, want no figures", u)
	}
}

func TestTopCum(t *testing.T) {
	const header = "File: fqdngate\nType: cpu\nDuration: 7s, Total samples = 6.90s (98.50%)\nActive filters:\n   focus=Record\n"
	for _, c := range []struct {
		name, out string
		want      float64
		err       bool
	}{
		{"a focus", header + "Showing nodes accounting for 410ms, 5.94% of 6900ms total\nShowing top 1 nodes out of 77\n      flat  flat%   sum%        cum   cum%\n         0     0%     0%      1.30s 18.84%  github.com/fqdngate/fqdngate/internal/dnsproxy.(*Handler).ServeDNS\n", 18.84, false},
		{"a flat first node", header + "      flat  flat%   sum%        cum   cum%\n     2.06s 29.86% 29.86%      2.06s 29.86%  internal/runtime/syscall/linux.Syscall6\n", 29.86, false},
		{"the focus matched nothing", "Focus expression matched no samples\n", 0, false},
		{"a table with no node", header + "Showing nodes accounting for 0, 0% of 6.90s total\n      flat  flat%   sum%        cum   cum%\n", 0, false},
		{"not pprof's output", "go: unknown tool\n", 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := topCum([]byte(c.out))
			if (err != nil) != c.err || got != c.want {
				t.Errorf("got %v, error %v; want %v, error %v", got, err, c.want, c.err)
			}
		})
	}
}

// TestPartsMatchTheCode checks the report's parts against fqdngate's
// functions as they are: a part whose functions were renamed would print
// 0% for ever, and read as a finding.
func TestPartsMatchTheCode(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "fqdngate")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/fqdngate").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command("go", "tool", "nm", bin).Output()
	if err != nil {
		t.Fatalf("go tool nm: %v", err)
	}
	var funcs []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && (f[1] == "T" || f[1] == "t") {
			funcs = append(funcs, strings.Join(f[2:], " "))
		}
	}
	for _, p := range parts {
		re := regexp.MustCompile(p.focus)
		if !slices.ContainsFunc(funcs, re.MatchString) {
			t.Errorf("part %q: no function of fqdngate matches %s", p.name, p.focus)
		}
		if p.ignore != "" {
			regexp.MustCompile(p.ignore)
		}
	}
}

func TestWriteCPU(t *testing.T) {
	rows := []row{
		{name: "dnsmasq", uniqueQPS: 31745, cpu: cpuUse{user: 16.9, system: 8.5, irq: 6.0, ok: true}},
		{name: nameNone, uniqueQPS: 38137, cpu: cpuUse{user: 19.1, system: 4.7, irq: 2.4, ok: true}},
		{name: nameEnforce, uniqueQPS: 24535, cpu: cpuUse{user: 25.6, system: 12.1, irq: 3.1, idle: 1, steal: 2, ok: true}},
		{name: "unbound (1 thread)", uniqueQPS: 20000},
		{name: "dnsdist", uniqueQPS: 70000, cpu: cpuUse{user: 2.5, system: 4.8, irq: 2.7, idle: 27, ok: true}},
		{name: floorName, uniqueQPS: 52000, cpu: cpuUse{user: 8.3, system: 6.6, irq: 2.8, ok: true}},
		{name: floorBatchName, uniqueQPS: 58000, cpu: cpuUse{user: 7.5, system: 6.0, irq: 2.5, ok: true}},
	}
	var b strings.Builder
	writeCPU(&b, rows)
	for _, want := range []string{
		"| fqdngate (nftables, enforce) | 24535 | 25.6 | 12.1 | 3.1 | 40.8 | 1% | 2% |",
		"| unbound (1 thread) | 20000 | - | - | - | - | - | - |",
		"Enforcing took 7.4 µs of system time per query more than backend none",
		"as fast as plain dnsmasq (31.4 µs of CPU 0 per query here) with the kernel and interrupt time it has (15.2 µs), enforcing fqdngate's own code would have to take 16.2 µs per query or less; it takes 25.6 µs, and dnsmasq's own code 16.9 µs.",
		// 1e6 / (0.7 × 70000) = 20.4 µs; floors 17.7 and 16.0; none 26.2 = 16.0 + 10.2.
		"Backend none at 0.7× dnsdist would answer 49000 qps: 20.4 µs of CPU 0 per query at most. Forwarding alone takes the Go floor 17.7 µs (0.74× dnsdist), and 16.0 µs with batched I/O (0.83×). Backend none takes 26.2 µs, 10.2 µs more than the cheaper floor for its policy, cache, ledger, events and metrics; the target leaves them 4.4 µs.",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
	// Without fqdngate's rows (-only), no sentence about them.
	b.Reset()
	writeCPU(&b, rows[:1])
	if strings.Contains(b.String(), "Enforcing took") {
		t.Errorf("sentence without the rows it needs:\n%s", b.String())
	}
	// A floor slower than the target leaves nothing.
	rows[5].cpu.user, rows[6].cpu.user = 30, 30
	b.Reset()
	writeCPU(&b, rows)
	if want := "the target leaves them nothing."; !strings.Contains(b.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, b.String())
	}
}

func TestWriteBreakdown(t *testing.T) {
	shares := make([]float64, len(parts))
	shares[2] = 21.4
	rows := []row{{name: "dnsmasq"}, {name: nameNone, parts: breakdown{shares: shares}}}
	var b strings.Builder
	writeBreakdown(&b, rows)
	if want := "| " + parts[2].name + " | 21.4% |"; !strings.Contains(b.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, b.String())
	}
	if strings.Contains(b.String(), "| dnsmasq |") {
		t.Errorf("a column for a server without a profile:\n%s", b.String())
	}
	b.Reset()
	writeBreakdown(&b, rows[:1])
	if b.Len() != 0 {
		t.Errorf("a table without profiles:\n%s", b.String())
	}
}
