package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Where the server's time goes. The maximum rate says how fast a server
// is, not why; the report needs the why for every target it misses. Two
// views, both from the same run:
//
//   - CPU 0's time during the maximum-rate run, per answered query, from
//     /proc/stat: the server's own code (user), the kernel's work in its
//     system calls (system: a send on loopback delivers the datagram into
//     the receiver's socket in the sender's call), interrupts, and idle
//     (near zero: the server, not the load side, was the limit). For
//     every server, so fqdngate's figures stand beside the Go floor's and
//     dnsmasq's.
//   - For fqdngate, a CPU profile of one more unique-mix run on a fresh
//     server, summed by what the code is doing.

// cpuTicks is one CPU's line of /proc/stat, in clock ticks (USER_HZ).
type cpuTicks struct {
	user, system, irq, idle, steal uint64
}

// userHz is the unit of /proc/stat: USER_HZ, 100 on every Linux ABI.
const userHz = 100

// readCPU returns CPU n's line of /proc/stat.
func readCPU(n int) (cpuTicks, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTicks{}, err
	}
	return parseCPU(b, n)
}

// parseCPU finds CPU n's line ("cpuN user nice system idle iowait irq
// softirq steal ...") in the text of /proc/stat. nice counts as user,
// iowait as idle, softirq with irq.
func parseCPU(stat []byte, n int) (cpuTicks, error) {
	return parseCPULine(stat, "cpu"+strconv.Itoa(n))
}

// parseCPULine reads the line of stat whose first field is label ("cpu"
// for the whole machine, "cpuN" for one CPU).
func parseCPULine(stat []byte, label string) (cpuTicks, error) {
	sc := bufio.NewScanner(bytes.NewReader(stat))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != label {
			continue
		}
		if len(f) < 9 {
			return cpuTicks{}, fmt.Errorf("/proc/stat: %s has %d fields, want at least 8 counters", label, len(f)-1)
		}
		var v [8]uint64
		for i := range v {
			x, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return cpuTicks{}, fmt.Errorf("/proc/stat: %s field %d: %w", label, i+1, err)
			}
			v[i] = x
		}
		return cpuTicks{user: v[0] + v[1], system: v[2], idle: v[3] + v[4], irq: v[5] + v[6], steal: v[7]}, nil
	}
	return cpuTicks{}, fmt.Errorf("/proc/stat: no %s line", label)
}

func (t cpuTicks) minus(o cpuTicks) cpuTicks {
	return cpuTicks{t.user - o.user, t.system - o.system, t.irq - o.irq, t.idle - o.idle, t.steal - o.steal}
}

// stealShare is the share of t (percent) the hypervisor took; false when
// t is empty.
func (t cpuTicks) stealShare() (float64, bool) {
	total := t.user + t.system + t.irq + t.idle + t.steal
	if total == 0 {
		return 0, false
	}
	return 100 * float64(t.steal) / float64(total), true
}

// cpuUse is a run's CPU 0 time: µs per answered query where the server
// worked, and shares of the window where it did not.
type cpuUse struct {
	user, system, irq float64 // µs per answered query
	idle, steal       float64 // percent of the run's CPU 0 time
	ok                bool
}

// perQuery spreads the ticks d of a run over its answered queries.
func perQuery(d cpuTicks, answered float64) cpuUse {
	total := float64(d.user + d.system + d.irq + d.idle + d.steal)
	if answered <= 0 || total == 0 {
		return cpuUse{}
	}
	us := func(t uint64) float64 { return float64(t) * 1e6 / userHz / answered }
	steal, _ := d.stealShare()
	return cpuUse{user: us(d.user), system: us(d.system), irq: us(d.irq),
		idle: 100 * float64(d.idle) / total, steal: steal, ok: true}
}

// onCPU0 runs f and returns CPU 0's ticks meanwhile.
func onCPU0(f func() error) (cpuTicks, error) {
	before, err := readCPU(0)
	if err != nil {
		return cpuTicks{}, err
	}
	if err := f(); err != nil {
		return cpuTicks{}, err
	}
	after, err := readCPU(0)
	if err != nil {
		return cpuTicks{}, err
	}
	return after.minus(before), nil
}

// writeCPU writes a run's table of CPU 0 per answered query.
func writeCPU(w io.Writer, rows []row) {
	fmt.Fprintf(w, "CPU 0 (the server's) during the unique mix's maximum-rate run, from /proc/stat: the server's own code (user), the kernel's work in its system calls (system: a send on loopback also delivers the datagram into the receiving socket, and a netlink send runs the nftables transaction), interrupts (irq and softirq), in µs per answered query; and the share of the run CPU 0 was idle (near 0: the server was the limit) or taken by the hypervisor (steal). Everything CPU 0 ran counts: the server, and the kernel's workers that its work queued there (the resizing of a growing nftables set's hash table, for one).\n\n")
	fmt.Fprintln(w, "| server | unique qps | user µs | system µs | irq µs | all µs | idle | steal |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		c := r.cpu
		if !c.ok {
			fmt.Fprintf(w, "| %s | %.0f | - | - | - | - | - | - |\n", r.name, r.uniqueQPS)
			continue
		}
		fmt.Fprintf(w, "| %s | %.0f | %.1f | %.1f | %.1f | %.1f | %.0f%% | %.0f%% |\n", r.name, r.uniqueQPS, c.user, c.system, c.irq, c.all(), c.idle, c.steal)
	}
	fmt.Fprintln(w)
	base, ok1 := find(rows, "dnsmasq")
	none, ok2 := find(rows, nameNone)
	enf, ok3 := find(rows, nameEnforce)
	if !ok1 || !ok2 || !ok3 || !base.cpu.ok || !none.cpu.ok || !enf.cpu.ok {
		return
	}
	// What the enforce target asks of fqdngate's own code, in this run's
	// figures: the kernel's share of an enforced answer is what it is.
	kernel := enf.cpu.system + enf.cpu.irq
	fmt.Fprintf(w, "Enforcing took %.1f µs of system time per query more than backend none: the kernel's work on the nftables transactions. To answer as fast as plain dnsmasq (%.1f µs of CPU 0 per query here) with the kernel and interrupt time it has (%.1f µs), enforcing fqdngate's own code would have to take %.1f µs per query or less; it takes %.1f µs, and dnsmasq's own code %.1f µs.\n\n",
		enf.cpu.system-none.cpu.system, base.cpu.all(), kernel, base.cpu.all()-kernel, enf.cpu.user, base.cpu.user)
	writeNoneBudget(w, rows, none)
}

// writeNoneBudget says what the backend none target asks, in this run's
// figures: the CPU per query it allows, against what the Go floors take
// for forwarding alone and what backend none adds to that.
func writeNoneBudget(w io.Writer, rows []row, none row) {
	dd, ok1 := find(rows, "dnsdist")
	fl, ok2 := find(rows, floorName)
	fb, ok3 := find(rows, floorBatchName)
	if !ok1 || !ok2 || !ok3 || dd.uniqueQPS <= 0 || !fl.cpu.ok || !fb.cpu.ok {
		return
	}
	goal := noneTarget * dd.uniqueQPS
	budget := 1e6 / goal // µs of CPU 0 per query with CPU 0 always busy
	floor := min(fl.cpu.all(), fb.cpu.all())
	left := "nothing"
	if budget > floor {
		left = fmt.Sprintf("%.1f µs", budget-floor)
	}
	fmt.Fprintf(w, "Backend none at %.1f× dnsdist would answer %.0f qps: %.1f µs of CPU 0 per query at most. Forwarding alone takes the Go floor %.1f µs (%.2f× dnsdist), and %.1f µs with batched I/O (%.2f×). Backend none takes %.1f µs, %.1f µs more than the cheaper floor for its policy, cache, ledger, events and metrics; the target leaves them %s.\n\n",
		noneTarget, goal, budget, fl.cpu.all(), fl.uniqueQPS/dd.uniqueQPS, fb.cpu.all(), fb.uniqueQPS/dd.uniqueQPS,
		none.cpu.all(), none.cpu.all()-floor, left)
}

func (c cpuUse) all() float64 { return c.user + c.system + c.irq }

// A part is a share of fqdngate's CPU profile: the samples whose stack
// holds a function that focus matches and none that ignore matches
// (pprof's -focus and -ignore). Parts overlap where one calls another
// (allocation happens inside all of them), so they do not add up to 100%.
type part struct {
	name, focus, ignore string
}

// cacheFuncs are the DNS cache's functions.
const cacheFuncs = `/internal/dnsproxy\.(\(\*(Cache|cached|prepared)\)\.|prepare$)`

// dnsMsgFuncs are miekg/dns's unpacking and packing of whole messages.
const dnsMsgFuncs = `^github\.com/miekg/dns\.\(\*Msg\)\.(Unpack|Pack|PackBuffer)$`

// nftFlush is google/nftables's sending of a transaction and reading of
// its acknowledgements.
const nftFlush = `^github\.com/google/nftables\.\(\*Conn\)\.Flush$`

// nftEncode is google/nftables's encoding of set elements, which the
// enforcer calls before Flush sends them.
const nftEncode = `^github\.com/google/nftables\.\(\*Conn\)\.Set(Add|Delete)Elements$`

var parts = []part{
	{name: "UDP sockets: reads and sends to clients and the upstream (the kernel's loopback delivery included)", focus: `^net\.\(\*(UDPConn|conn)\)\.(Read|Write)`},
	{name: "DNS messages: miekg/dns unpacking and packing", focus: dnsMsgFuncs},
	{name: "ledger: recording answers", focus: `/internal/ledger\.`},
	{name: "DNS cache", focus: cacheFuncs},
	{name: "the handler's other work (upstream exchange bookkeeping, answer walk, policy match)", focus: `/internal/dnsproxy\.\(\*Handler\)\.resolve$`,
		ignore: `^net\.|/internal/(ledger|enforce)\.|` + dnsMsgFuncs + "|" + cacheFuncs},
	{name: "nftables: netlink transactions (google/nftables Flush, the kernel's set work included)", focus: nftFlush},
	{name: "nftables: encoding the elements (google/nftables SetAddElements, SetDeleteElements)", focus: nftEncode},
	{name: "nftables: the rest of the enforcer (elements from grants, the map of what the kernel holds, the writer's queue)", focus: `/internal/enforce\.`,
		ignore: nftFlush + "|" + nftEncode},
	{name: "events and metrics", focus: `/internal/(monitor|metrics)\.|prometheus`},
	{name: "memory allocation (inside all of the above)", focus: `^runtime\.mallocgc$`},
	{name: "garbage collection (background and assists)", focus: `^runtime\.(gcBgMarkWorker|gcAssistAlloc|bgsweep|bgscavenge)$`},
	{name: "scheduler and poller", focus: `^runtime\.(schedule|findRunnable|netpoll|park_m)$`},
}

// breakdown is fqdngate's profile summed by parts.
type breakdown struct {
	shares []float64 // percent, in the order of parts
}

// profileParts fetches a CPU profile (cpuProfile) from the running
// fqdngate while f loads it, keeps it as path, and sums it by parts.
func profileParts(binary, path string, f func() error) (breakdown, error) {
	fetchErr, err := fetchDuring(path, cpuProfile(), f)
	if err != nil {
		return breakdown{}, err
	}
	if fetchErr != nil {
		return breakdown{}, fmt.Errorf("profile: %w", fetchErr)
	}
	var b breakdown
	for _, p := range parts {
		args := []string{"tool", "pprof", "-top", "-cum", "-nodecount=1", "-focus=" + p.focus}
		if p.ignore != "" {
			args = append(args, "-ignore="+p.ignore)
		}
		out, err := exec.Command("go", append(args, binary, path)...).Output()
		if err != nil {
			return breakdown{}, fmt.Errorf("go tool pprof %s: %w", filepath.Base(path), err)
		}
		share, err := topCum(out)
		if err != nil {
			return breakdown{}, fmt.Errorf("%s: %w", p.name, err)
		}
		b.shares = append(b.shares, share)
	}
	return b, nil
}

var topLineRe = regexp.MustCompile(`(?m)^\s*\S+\s+\S+%\s+\S+%\s+\S+\s+([0-9.]+)%\s+\S`)

// topCum reads the cumulative share of the first node of `pprof -top
// -cum` output: with a focus, the share of all samples the focus holds.
// No node (the focus matched nothing) is 0.
func topCum(out []byte) (float64, error) {
	if !bytes.Contains(out, []byte("flat%")) {
		if bytes.Contains(out, []byte("matched no samples")) || len(bytes.TrimSpace(out)) == 0 || bytes.Contains(out, []byte("Showing nodes accounting for 0")) {
			return 0, nil
		}
		return 0, fmt.Errorf("pprof output without a table:\n%s", out)
	}
	m := topLineRe.FindSubmatch(out[bytes.Index(out, []byte("flat%")):])
	if m == nil {
		return 0, nil // a header and no node: nothing matched
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// writeBreakdown writes fqdngate's profiles of a run side by side.
func writeBreakdown(w io.Writer, rows []row) {
	var have []row
	for _, r := range rows {
		if len(r.parts.shares) == len(parts) {
			have = append(have, r)
		}
	}
	if len(have) == 0 {
		return
	}
	fmt.Fprintf(w, "fqdngate's CPU profile (pprof, 100 samples a second) during one more unique-mix run on a fresh server at the maximum rate (all of its %s but the last two seconds): the share of its samples in each part. Parts that call one another overlap (allocation is inside the others), so the column does not add up to 100%%.\n\n", *duration)
	fmt.Fprint(w, "| part |")
	for _, r := range have {
		fmt.Fprintf(w, " %s |", r.name)
	}
	fmt.Fprint(w, "\n|---|")
	for range have {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w)
	for i, p := range parts {
		fmt.Fprintf(w, "| %s |", p.name)
		for _, r := range have {
			fmt.Fprintf(w, " %.1f%% |", r.parts.shares[i])
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}
