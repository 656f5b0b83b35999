package e2e

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/api"
)

// The fairness test's caps: a small ledger, as in the report (max_entries
// 1000), an eighth of it per client.
const (
	fairMaxEntries   = 1000
	fairPerClient    = 125
	fairMaxQPS       = 2000
	fairMaxInflight  = 16
	fairFloodNames   = 20_000
	fairFloodWorkers = 24
	// fairRSSBound is the most VmRSS fqdngate may have after the floods,
	// for a normal build (normalBinary). Measured: 18 MiB at the start,
	// 55-65 after one flood, 85-92 after two, and 150-160 from the fifth
	// of eight floods on, where it stays. What the caps hold is a live
	// heap of 10 MiB after a collection (6 of them the names kept for
	// `fqdngate suggest`); the rest is the garbage of the queries, which
	// the collector lets grow to its 64 MiB floor (README, Performance)
	// and beyond while a flood outruns it on a busy machine. The race
	// detector's shadow memory follows that garbage, not the caps: the
	// race build grew from 420 to 670 MiB over two floods, so it is not
	// what this measures.
	fairRSSBound = 192 << 20
)

// fairClients continues the enforcer section (startGateway writes the
// clients section right after its enforcer keys, so the first two lines,
// indented, belong to it): every device in one group, limited per client,
// allowed a wildcard zone whose every name answers.
var fairClients = fmt.Sprintf(`  max_entries: %d
  max_entries_per_client: %d
cache_size: 0
clients:
  - name: devices
    cidrs: ["192.0.2.0/24", "2001:db8:1::/64"]
    max_qps: %d
    max_inflight: %d
    rules:
      - name: wild
        fqdn: ["*.flood.example.com"]
        ports: ["tcp/443"]
`, fairMaxEntries, fairPerClient, fairMaxQPS, fairMaxInflight)

// TestFairness is issue 22's flood: device B resolves and connects; device
// A floods 20,000 random names under the allowed wildcard; B's earlier
// answers still connect, A is rate limited and counted by group, the
// ledger stays within its caps and fqdngate's memory within its bound.
func TestFairness(t *testing.T) {
	tp := newTopoClients(t, "enforce", fairClients)
	tp.relaunch(t, normalBinary(t))

	// B's answers, before the flood: each connects.
	var bAddrs []netip.Addr
	for i := range 20 {
		as := tp.addrsOf(t, tp.devB, fmt.Sprintf("b%d.flood.example.com.", i), dns.TypeA, gwDevAddr4)
		bAddrs = append(bAddrs, as...)
	}
	for _, a := range bAddrs[:3] {
		c, err := connect(tp.devB, a, 443, 2*time.Second)
		if err != nil {
			t.Fatalf("B's answer %s does not connect before the flood: %v", a, err)
		}
		c.Close()
	}
	rssBefore := vmRSS(t, tp.proc.Process.Pid)

	res := flood(t, tp, fairFloodNames, fairFloodWorkers)
	rssFlood := vmRSS(t, tp.proc.Process.Pid)
	t.Logf("flood: %d answered, %d refused (rate limited), %d other, %d timeouts in %s; VmRSS %d → %d KiB; %s",
		res.ok, res.limited, res.other, res.timeouts, res.took.Round(time.Millisecond), rssBefore>>10, rssFlood>>10, tp.goMemory(t))
	// A second flood as big: memory held by the caps stays as it is.
	again := flood(t, tp, fairFloodNames, fairFloodWorkers)
	rssAgain := vmRSS(t, tp.proc.Process.Pid)
	t.Logf("second flood: %d answered, %d refused in %s; VmRSS %d KiB; %s", again.ok, again.limited, again.took.Round(time.Millisecond), rssAgain>>10, tp.goMemory(t))
	res.limited += again.limited
	if res.ok <= fairMaxEntries {
		t.Fatalf("only %d of the flood's names were answered: too few to fill a ledger of %d, the test proves nothing", res.ok, fairMaxEntries)
	}
	if res.other > 0 {
		t.Errorf("%d flood queries got neither an answer nor a rate-limited REFUSED", res.other)
	}

	// B's earlier answers still connect: new connections, after the flood.
	for _, a := range bAddrs {
		c, err := connect(tp.devB, a, 443, 2*time.Second)
		if err != nil {
			t.Fatalf("B's answer %s no longer connects after A's flood: %v", a, err)
		}
		c.Close()
	}

	// A was limited, and the counts by group say exactly as much.
	if res.limited == 0 {
		t.Fatal("A was never rate limited")
	}
	m := tp.metrics(t)
	counted := m[`fqdngate_dns_rate_limited_total{group="devices",limit="qps"}`] + m[`fqdngate_dns_rate_limited_total{group="devices",limit="inflight"}`]
	t.Logf("rate limited: qps %v, inflight %v", m[`fqdngate_dns_rate_limited_total{group="devices",limit="qps"}`], m[`fqdngate_dns_rate_limited_total{group="devices",limit="inflight"}`])
	if int(counted) != res.limited {
		t.Errorf("fqdngate_dns_rate_limited_total for devices %v, A saw %d refusals", counted, res.limited)
	}
	if got := m[`fqdngate_dns_queries_total{decision="rate-limited",group="devices"}`]; int(got) != res.limited {
		t.Errorf("queries with decision rate-limited %v, A saw %d", got, res.limited)
	}

	// The ledger within its caps: A within its quota, B's answers all kept.
	if n := m["fqdngate_ledger_entries"]; n > fairMaxEntries {
		t.Errorf("ledger holds %v entries, max_entries %d", n, fairMaxEntries)
	}
	if n := m[`fqdngate_ledger_evictions_total{cap="per_client"}`]; n == 0 {
		t.Error("no per-client evictions counted")
	}
	for _, c := range []struct {
		client string
		max    int
	}{{devAAddr4, fairPerClient}, {devBAddr4, 20}} {
		var led api.LedgerResponse
		tp.apiGet(t, "/api/v1/ledger?limit=10000&client="+c.client, &led)
		if len(led.Entries) > c.max {
			t.Errorf("%s holds %d ledger entries, at most %d", c.client, len(led.Entries), c.max)
		}
		if c.client == devBAddr4 && len(led.Entries) != 20 {
			t.Errorf("B holds %d of its 20 answers", len(led.Entries))
		}
	}

	if rss := vmRSS(t, tp.proc.Process.Pid); rss > fairRSSBound {
		t.Errorf("fqdngate VmRSS %d MiB after the flood, bound %d MiB (race build)", rss>>20, fairRSSBound>>20)
	}
}

// normalBinary builds fqdngate without -race, once, for measuring its
// memory as users run it.
func normalBinary(t *testing.T) string {
	t.Helper()
	normalOnce.Do(func() {
		normalPath = filepath.Join(filepath.Dir(binary), "fqdngate-norace")
		out, err := exec.Command("go", "build", "-o", normalPath, "../cmd/fqdngate").CombinedOutput()
		if err != nil {
			normalErr = fmt.Errorf("build: %w\n%s", err, out)
		}
	})
	if normalErr != nil {
		t.Fatal(normalErr)
	}
	return normalPath
}

var (
	normalOnce sync.Once
	normalPath string
	normalErr  error
)

// relaunch stops the running fqdngate and starts bin instead, with the
// same configuration. launch starts the package's binary, which this
// swaps for the call (the e2e tests do not run in parallel).
func (tp *topo) relaunch(t *testing.T, bin string) {
	t.Helper()
	if err := tp.proc.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-tp.exited
	race := binary
	binary = bin
	defer func() { binary = race }()
	tp.launch()
}

// goMemory is the Go runtime's own account of fqdngate's memory.
func (tp *topo) goMemory(t *testing.T) string {
	m := tp.metrics(t)
	return fmt.Sprintf("heap in use %.0f MiB, stacks %.0f MiB, %v goroutines",
		m["go_memstats_heap_inuse_bytes"]/(1<<20), m["go_memstats_stack_inuse_bytes"]/(1<<20), m["go_goroutines"])
}

type floodResult struct {
	ok, limited, other, timeouts int
	took                         time.Duration
}

// flood sends n random names under the wildcard from device A, from
// workers sockets at once, each waiting for its answer (a timeout
// counts and moves on), and returns what came back. It is bounded by
// a minute.
func flood(t *testing.T, tp *topo, n, workers int) floodResult {
	t.Helper()
	conns := make([]*dns.Conn, workers)
	err := tp.devA.Do(func() error {
		for i := range conns {
			c, err := net.Dial("udp", net.JoinHostPort(gwDevAddr4, "53"))
			if err != nil {
				return err
			}
			conns[i] = &dns.Conn{Conn: c}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var next, ok, limited, other, timeouts atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for _, c := range conns {
		wg.Go(func() {
			defer c.Close()
			r := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				m := new(dns.Msg)
				m.SetQuestion(fmt.Sprintf("r%x.flood.example.com.", r.Uint64()), dns.TypeA)
				m.SetEdns0(1232, false)
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				if err := c.WriteMsg(m); err != nil {
					other.Add(1)
					continue
				}
				resp, err := readReply(c, m.Id)
				switch {
				case err != nil:
					timeouts.Add(1)
				case resp.Rcode == dns.RcodeSuccess && len(resp.Answer) > 0:
					ok.Add(1)
				case resp.Rcode == dns.RcodeRefused && strings.Contains(edeText(resp), "rate limited"):
					limited.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("the flood of %d names did not end within a minute", n)
	}
	return floodResult{ok: int(ok.Load()), limited: int(limited.Load()), other: int(other.Load()),
		timeouts: int(timeouts.Load()), took: time.Since(start)}
}

// readReply reads until the reply to id, skipping late replies to
// queries that timed out before.
func readReply(c *dns.Conn, id uint16) (*dns.Msg, error) {
	for {
		r, err := c.ReadMsg()
		if err != nil {
			return nil, err
		}
		if r.Id == id {
			return r, nil
		}
	}
}

func edeText(m *dns.Msg) string {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				return e.ExtraText
			}
		}
	}
	return ""
}

// vmRSS is the resident memory of process pid, in bytes.
func vmRSS(t *testing.T, pid int) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
