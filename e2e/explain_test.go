package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/api"
	"github.com/fqdngate/fqdngate/internal/lab"
	"github.com/fqdngate/fqdngate/internal/monitor"
)

// explainClients puts device B in a group of its own that may resolve
// evil.example.com, which device A may not: the setting of denied-name.
const explainClients = `clients:
  - name: devices
    cidrs: ["192.0.2.0/24", "2001:db8:1::/64"]
    rules:
      - name: web
        fqdn: ["www.example.com", "rot.example.com", "short.example.com"]
        ports: ["tcp/443"]
  - name: lab
    cidrs: ["192.0.2.11/32"]
    rules:
      - name: web
        fqdn: ["www.example.com", "rot.example.com", "short.example.com", "evil.example.com"]
        ports: ["tcp/443"]
`

const apiBase = "http://127.0.0.1:9053"

// apiClient talks to the daemon's API inside the gateway namespace.
// net/http dials on goroutines of its own, so the socket is made inside
// the namespace by the dial function.
func (tp *topo) apiClient() *http.Client {
	dial := func(_ context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := tp.gw.Do(func() error {
			var err error
			c, err = net.Dial(network, addr)
			return err
		})
		return c, err
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, DialContext: dial}}
}

// apiGet asks the daemon's API from inside the gateway namespace.
func (tp *topo) apiGet(t *testing.T, path string, v any) {
	t.Helper()
	c := tp.apiClient()
	resp, err := c.Get(apiBase + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s\n%s", path, resp.Status, body)
	}
	if s, ok := v.(*string); ok {
		*s = string(body)
		return
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, body)
	}
}

// sendUDP sends n datagrams from ns to addr:port, paced so that a
// burst stays within what the lab is meant to absorb.
func sendUDP(t *testing.T, ns interface{ Do(func() error) error }, addr netip.Addr, port uint16, n int) {
	t.Helper()
	err := ns.Do(func() error {
		c, err := net.Dial("udp", netip.AddrPortFrom(addr, port).String())
		if err != nil {
			return err
		}
		defer c.Close()
		for i := range n {
			if _, err := c.Write([]byte("x")); err != nil {
				return err
			}
			if i%500 == 499 {
				time.Sleep(20 * time.Millisecond)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitDrops waits until the daemon has attributed want drops in all.
func (tp *topo) waitDrops(t *testing.T, want float64) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := tp.metrics(t)
		total := m["fqdngate_drop_events_unattributed_total"]
		for _, r := range monitor.Reasons {
			total += m[`fqdngate_drops_total{reason="`+string(r)+`"}`]
		}
		if total >= want || time.Now().After(deadline) {
			return m
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var sampleLine = regexp.MustCompile(`^([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$`)

// metrics scrapes /metrics into "name{labels}" → value.
func (tp *topo) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	var text string
	tp.apiGet(t, "/metrics", &text)
	out := make(map[string]float64)
	for _, line := range strings.Split(text, "\n") {
		if m := sampleLine.FindStringSubmatch(line); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			out[m[1]] = v
		}
	}
	return out
}

// TestExplain: each kind of drop, produced by a real device, explained by
// the API and by `fqdngate explain` with the right reason, name and chain;
// then the metrics of the whole scenario, value by value.
func TestExplain(t *testing.T) {
	tp := newTopoClients(t, "enforce", explainClients)
	bad := netip.MustParseAddr("203.0.113.99")
	explain := func(t *testing.T, client, addr netip.Addr, port string) monitor.Explanation {
		t.Helper()
		var ex monitor.Explanation
		tp.apiGet(t, fmt.Sprintf("/api/v1/explain?addr=%s&client=%s&port=%s", addr, client, port), &ex)
		return ex
	}
	want := func(t *testing.T, ex monitor.Explanation, reason monitor.Reason, name string, msg string) {
		t.Helper()
		if ex.Reason != reason || ex.Name != name || !strings.Contains(ex.Message, msg) {
			t.Errorf("got %s %q: %q\nwant %s %q: ...%q...", ex.Reason, ex.Name, ex.Message, reason, name, msg)
		}
	}
	devA := netip.MustParseAddr(devAAddr4)
	devB := netip.MustParseAddr(devBAddr4)

	t.Run("never-resolved", func(t *testing.T) {
		if _, err := connect(tp.devA, bad, 443, dropWait); !dropped(err) {
			t.Fatalf("connection to an address never answered: %v", err)
		}
		want(t, explain(t, devA, bad, "tcp/443"), monitor.NeverResolved, "", "192.0.2.10 never got 203.0.113.99 from fqdngate")
		out, err := tp.gw.Run(binary, "explain", bad.String(), "--client", devAAddr4, "--port", "tcp/443")
		if err != nil || !strings.Contains(out, "never got 203.0.113.99") || !strings.Contains(out, "reason: never-resolved") {
			t.Errorf("fqdngate explain: %v\n%s", err, out)
		}
	})

	t.Run("other-client", func(t *testing.T) {
		addrs := tp.addrsOf(t, tp.devB, "rot.example.com.", dns.TypeA, gwDevAddr4)
		if _, err := connect(tp.devA, addrs[0], 443, dropWait); !dropped(err) {
			t.Fatalf("A used B's address: %v", err)
		}
		ex := explain(t, devA, addrs[0], "tcp/443")
		want(t, ex, monitor.OtherClient, "rot.example.com", "for 192.0.2.11, not for 192.0.2.10")
		if strings.Join(ex.Chain, " ") != "rot.edge.example.net a1.cdn.example.org" {
			t.Errorf("chain %v", ex.Chain)
		}
	})

	t.Run("port", func(t *testing.T) {
		addrs := tp.addrsOf(t, tp.devA, "www.example.com.", dns.TypeA, gwDevAddr4)
		if _, err := connect(tp.devA, addrs[0], 8443, dropWait); !dropped(err) {
			t.Fatalf("port 8443: %v", err)
		}
		want(t, explain(t, devA, addrs[0], "tcp/8443"), monitor.WrongPort, "www.example.com", "allowed on tcp/443, not on tcp/8443")
	})

	t.Run("denied-name", func(t *testing.T) {
		addrs := tp.addrsOf(t, tp.devB, "evil.example.com.", dns.TypeA, gwDevAddr4)
		r, err := tp.resolve(tp.devA, "evil.example.com.", dns.TypeA, gwDevAddr4)
		if err != nil || r.Rcode != dns.RcodeNameError {
			t.Fatalf("A asking evil: %v %v", r, err)
		}
		if _, err := connect(tp.devA, addrs[0], 443, dropWait); !dropped(err) {
			t.Fatalf("A reached the denied name's address: %v", err)
		}
		want(t, explain(t, devA, addrs[0], "tcp/443"), monitor.DeniedName, "evil.example.com", "192.0.2.10 asked for evil.example.com")
	})

	t.Run("expired", func(t *testing.T) {
		addrs := tp.addrsOf(t, tp.devA, "short.example.com.", dns.TypeA, gwDevAddr4)
		var ex monitor.Explanation
		deadline := time.Now().Add(10 * time.Second)
		for {
			// Wait for the lifetime (ttl 1 s + grace 1 s) to pass, as the
			// API tells it.
			ex = explain(t, devA, addrs[0], "tcp/443")
			if ex.Reason != monitor.Allowed || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if _, err := connect(tp.devA, addrs[0], 443, dropWait); !dropped(err) {
			t.Fatalf("expired address still open: %v", err)
		}
		ex = explain(t, devA, addrs[0], "tcp/443")
		want(t, ex, monitor.Expired, "short.example.com", "expired")
		if ex.ExpiredAgo <= 0 || ex.TTL != 1 {
			t.Errorf("expired %vs ago, ttl %v", ex.ExpiredAgo, ex.TTL)
		}
		out, err := tp.gw.Run(binary, "explain", addrs[0].String(), "--client", devAAddr4, "--port", "tcp/443", "--json")
		var cli monitor.Explanation
		if err != nil || json.Unmarshal([]byte(out), &cli) != nil || cli.Reason != monitor.Expired ||
			cli.Name != "short.example.com" || len(cli.Chain) != 0 {
			t.Errorf("fqdngate explain --json: %v\n%s", err, out)
		}
	})

	t.Run("events carry the attributed drops", func(t *testing.T) {
		var evs api.EventsResponse
		seen := map[monitor.Reason]bool{}
		deadline := time.Now().Add(5 * time.Second)
		for len(seen) < 5 && time.Now().Before(deadline) {
			tp.apiGet(t, "/api/v1/events?since=0&limit=10000", &evs)
			for _, e := range evs.Events {
				if e.Kind == monitor.KindDrop && e.Client == devA && e.Drop != nil {
					seen[e.Drop.Reason] = true
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, r := range []monitor.Reason{monitor.NeverResolved, monitor.OtherClient, monitor.WrongPort, monitor.DeniedName, monitor.Expired} {
			if !seen[r] {
				t.Errorf("no drop event with reason %s; got %v", r, seen)
			}
		}
		var led api.LedgerResponse
		tp.apiGet(t, "/api/v1/ledger?client="+devBAddr4+"&name=evil.example.com", &led)
		if len(led.Entries) != 1 || led.Entries[0].Client != devB || led.Entries[0].Group != "lab" {
			t.Errorf("ledger for B and evil: %+v", led.Entries)
		}
	})

	t.Run("metrics after the scenario", func(t *testing.T) {
		// One UDP datagram is one packet: exact counts.
		sendUDP(t, tp.devA, bad, 9, 7)
		m := tp.waitDrops(t, 7+5)
		c := tp.counter(t, "drops")
		wantM := map[string]float64{
			`fqdngate_drops_total{reason="never-resolved"}`: float64(c) - m[`fqdngate_drops_total{reason="other-client"}`] - m[`fqdngate_drops_total{reason="port"}`] - m[`fqdngate_drops_total{reason="denied-name"}`] - m[`fqdngate_drops_total{reason="expired"}`],
			// The readiness probe and A's evil.example.com.
			`fqdngate_dns_queries_total{decision="denied",group="devices"}`: 2,
			`fqdngate_dns_queries_total{decision="allowed",group="lab"}`:    2,
			`fqdngate_kernel_packets_total{counter="drops"}`:                float64(c),
			`fqdngate_drop_events_unattributed_total`:                       0,
			`fqdngate_kernel_counters_up`:                                   1,
		}
		for k, v := range wantM {
			if m[k] != v {
				t.Errorf("%s = %v, want %v", k, m[k], v)
			}
		}
		// Every drop reason was produced at least once, never-resolved at
		// least the seven datagrams.
		for _, r := range []string{"other-client", "port", "denied-name", "expired"} {
			if m[`fqdngate_drops_total{reason="`+r+`"}`] < 1 {
				t.Errorf("no %s drop counted", r)
			}
		}
		if m[`fqdngate_drops_total{reason="never-resolved"}`] < 8 {
			t.Errorf("never-resolved drops %v, want at least 8", m[`fqdngate_drops_total{reason="never-resolved"}`])
		}
		if m["fqdngate_ledger_entries"] < 4 || m["fqdngate_set_elements"] < 1 {
			t.Errorf("ledger %v, elements %v", m["fqdngate_ledger_entries"], m["fqdngate_set_elements"])
		}
		// rot and evil for B, www and short for A: four answers.
		if m[`fqdngate_upstream_duration_seconds_count{upstream="198.51.100.53:53"}`] != 4 {
			t.Errorf("upstream histogram count %v", m[`fqdngate_upstream_duration_seconds_count{upstream="198.51.100.53:53"}`])
		}
		if m["fqdngate_rule_install_duration_seconds_count"] != 4 {
			t.Errorf("install histogram count %v", m["fqdngate_rule_install_duration_seconds_count"])
		}
	})

	t.Run("readyz and healthz", func(t *testing.T) {
		var s string
		tp.apiGet(t, "/readyz", &s)
		if strings.TrimSpace(s) != "ready" {
			t.Errorf("readyz: %q", s)
		}
		tp.apiGet(t, "/healthz", &s)
		if strings.TrimSpace(s) != "ok" {
			t.Errorf("healthz: %q", s)
		}
	})
}

// TestDropFlood: a bounded flood of dropped packets is counted exactly
// (attributed + unattributed = the kernel's counter) and does not grow the
// daemon's memory beyond its fixed buffers.
func TestDropFlood(t *testing.T) {
	// What the floods keep is measured, not when the collector runs: with
	// its heap floor (gcfloor) fqdngate lets garbage reach 64 MiB before
	// a collection, so here it runs with Go's own GOGC.
	t.Setenv("GOGC", "100")
	tp := newTopo(t, "enforce")
	bad := netip.MustParseAddr("203.0.113.98")
	rss := func() int {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", tp.proc.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}
	const n = 20000
	sendUDP(t, tp.devA, bad, 9, n)
	m1 := tp.waitDrops(t, n)
	after1 := rss()
	sendUDP(t, tp.devA, bad, 9, n)
	m2 := tp.waitDrops(t, 2*n)
	after2 := rss()
	kernel := tp.counter(t, "drops")
	attributed := m2[`fqdngate_drops_total{reason="never-resolved"}`]
	lost := m2["fqdngate_drop_events_unattributed_total"]
	t.Logf("kernel %d, attributed %v, unattributed %v, overruns %v; rss %d kB after one flood, %d kB after two",
		kernel, attributed, lost, m2["fqdngate_nflog_overruns_total"], after1, after2)
	if kernel != 2*n {
		t.Fatalf("kernel counted %d drops, want %d", kernel, 2*n)
	}
	if attributed+lost != float64(kernel) {
		t.Errorf("attributed %v + unattributed %v != kernel %d", attributed, lost, kernel)
	}
	if attributed < 0.9*float64(kernel) {
		t.Errorf("only %v of %d drops attributed", attributed, kernel)
	}
	_ = m1
	// The second flood must not cost what the first did: buffers are fixed.
	if grow := after2 - after1; grow > 8<<10 {
		t.Errorf("RSS grew %d kB over a second flood of %d drops", grow, n)
	}
	var evs api.EventsResponse
	tp.apiGet(t, "/api/v1/events?since=0&limit=10000", &evs)
	if len(evs.Events) > 4096 {
		t.Errorf("%d events kept; the ring holds 4096", len(evs.Events))
	}
}

// TestObserveWithoutConfigThenSuggest: `fqdngate run` without a
// configuration observes a host's queries, enforcing nothing, and
// `fqdngate suggest` turns what it saw into a configuration naming the
// catalog profile the names belong to.
func TestObserveWithoutConfigThenSuggest(t *testing.T) {
	tp := newTopo(t, "enforce")
	host := tp.devA
	// ip netns exec mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf:
	// the observer's upstream is the lab's, never this machine's resolver.
	dir := "/etc/netns/" + host.Name
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(dir+"/resolv.conf", []byte("nameserver "+upstreamAddr+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	proc := host.Command(binary, "run")
	var log lab.SyncBuffer
	proc.Stderr = &log
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = proc.Process.Signal(os.Interrupt)
		_ = proc.Wait()
		if t.Failed() {
			t.Logf("observer log:\n%s", log.String())
		}
	})
	names := []string{"prod.core.sphere.azure.net.", "www.msftconnecttest.com.", "prod.update.sphere.azure.net.", "api.vendor.example."}
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range names {
		for {
			var r *dns.Msg
			err := host.Do(func() error {
				m := new(dns.Msg)
				m.SetQuestion(n, dns.TypeA)
				var err error
				r, _, err = (&dns.Client{Timeout: time.Second}).Exchange(m, "127.0.0.1:5353")
				return err
			})
			if err == nil && r != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("observer not answering %s: %v", n, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	out, err := host.Run(binary, "suggest")
	if err != nil {
		t.Fatalf("suggest: %v\n%s", err, out)
	}
	for _, want := range []string{"mode: observe", "- azure-sphere  # 3 names seen", `fqdn: ["api.vendor.example"]`, `"127.0.0.1/32"`, `upstreams: ["` + upstreamAddr + `:53"]`} {
		if !strings.Contains(out, want) {
			t.Errorf("suggestion lacks %q:\n%s", want, out)
		}
	}
	file := t.TempDir() + "/suggested.yaml"
	if err := os.WriteFile(file, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	if v, err := host.Run(binary, "validate", "--config", file); err != nil {
		t.Errorf("suggested config does not validate: %v\n%s", err, v)
	}
}
