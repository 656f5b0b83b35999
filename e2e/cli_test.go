package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/api"
	"github.com/fqdngate/fqdngate/internal/check"
	"github.com/fqdngate/fqdngate/internal/monitor"
)

// cliClients allows the test names on tcp/443 and, for the check of IP
// literals, on tcp/9000 (an echo server) and tcp/9001 (nothing listens).
const cliClients = `clients:
  - name: devices
    cidrs: ["192.0.2.0/24", "2001:db8:1::/64"]
    rules:
      - name: web
        fqdn: ["www.example.com", "short.example.com"]
        ports: ["tcp/443", "tcp/9000", "tcp/9001"]
`

// waitLatestDrop polls the API (explain without a port) until the
// client's latest drop for addr has the reason: drops are attributed
// from NFLOG, after the packet.
func (tp *topo) waitLatestDrop(t *testing.T, client, addr netip.Addr, reason monitor.Reason) api.ExplainResponse {
	t.Helper()
	var r api.ExplainResponse
	deadline := time.Now().Add(5 * time.Second)
	for {
		r = api.ExplainResponse{}
		tp.apiGet(t, fmt.Sprintf("/api/v1/explain?addr=%s&client=%s", addr, client), &r)
		if (r.LatestDrop != nil && r.LatestDrop.Reason == reason) || time.Now().After(deadline) {
			return r
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestExplainLatestDrop: `fqdngate explain ADDR --client C` without
// --port tells the client's latest drop for the address first (reason,
// port, when), then what is open now: after a drop on a port the rule
// does not have, and after an expiry.
func TestExplainLatestDrop(t *testing.T) {
	tp := newTopoClients(t, "enforce", cliClients)
	devA := netip.MustParseAddr(devAAddr4)

	t.Run("port", func(t *testing.T) {
		addr := tp.addrsOf(t, tp.devA, "www.example.com.", dns.TypeA, gwDevAddr4)[0]
		if _, err := connect(tp.devA, addr, 8443, dropWait); !dropped(err) {
			t.Fatalf("port 8443: %v", err)
		}
		r := tp.waitLatestDrop(t, devA, addr, monitor.WrongPort)
		if r.LatestDrop == nil || r.LatestDrop.Port != "tcp/8443" || r.Reason != monitor.Allowed {
			t.Fatalf("API: %+v, latest %+v", r.Explanation, r.LatestDrop)
		}
		out, err := tp.gw.Run(binary, "explain", addr.String(), "--client", devAAddr4)
		lines := strings.Split(out, "\n")
		if err != nil || len(lines) < 5 || !strings.HasPrefix(lines[0], "latest drop: reason port, port tcp/8443, at ") ||
			!strings.Contains(lines[1], "allowed on tcp/443 tcp/9000 tcp/9001, not on tcp/8443") ||
			!strings.HasPrefix(lines[3], "now: "+addr.String()+" is www.example.com for 192.0.2.10 on tcp/443") || lines[4] != "  reason: allowed" {
			t.Errorf("fqdngate explain: %v\n%s", err, out)
		}
		// Flags first means the same; with --port, that port only.
		if again, err := tp.gw.Run(binary, "explain", "--client", devAAddr4, addr.String()); err != nil || !strings.HasPrefix(again, "latest drop: reason port") {
			t.Errorf("flags before the address: %v\n%s", err, again)
		}
		if p, err := tp.gw.Run(binary, "explain", addr.String(), "--client", devAAddr4, "--port", "tcp/443"); err != nil || strings.Contains(p, "latest drop") || !strings.Contains(p, "reason: allowed") {
			t.Errorf("with --port: %v\n%s", err, p)
		}
	})

	t.Run("expired", func(t *testing.T) {
		addr := tp.addrsOf(t, tp.devA, "short.example.com.", dns.TypeA, gwDevAddr4)[0]
		deadline := time.Now().Add(10 * time.Second)
		for {
			// Wait for the lifetime (ttl 1 s + grace 1 s) to pass, as the
			// API tells it.
			var ex api.ExplainResponse
			tp.apiGet(t, fmt.Sprintf("/api/v1/explain?addr=%s&client=%s&port=tcp/443", addr, devAAddr4), &ex)
			if ex.Reason != monitor.Allowed || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if _, err := connect(tp.devA, addr, 443, dropWait); !dropped(err) {
			t.Fatalf("expired address still open: %v", err)
		}
		r := tp.waitLatestDrop(t, devA, addr, monitor.Expired)
		if r.LatestDrop == nil || r.LatestDrop.Port != "tcp/443" || r.Reason != monitor.Expired || r.LatestDrop.Time.IsZero() {
			t.Fatalf("API: %+v, latest %+v", r.Explanation, r.LatestDrop)
		}
		out, err := tp.gw.Run(binary, "explain", addr.String(), "--client", devAAddr4, "--json")
		var cli api.ExplainResponse
		if err != nil || json.Unmarshal([]byte(out), &cli) != nil || cli.LatestDrop == nil || cli.LatestDrop.Reason != monitor.Expired ||
			cli.LatestDrop.Name != "short.example.com" || cli.Reason != monitor.Expired {
			t.Errorf("fqdngate explain --json: %v\n%s", err, out)
		}
		out, err = tp.gw.Run(binary, "explain", addr.String(), "--client", devAAddr4)
		if err != nil || !strings.HasPrefix(out, "latest drop: reason expired, port tcp/443, at ") || !strings.Contains(out, "\nnow: "+addr.String()+" was short.example.com") {
			t.Errorf("fqdngate explain: %v\n%s", err, out)
		}
	})
}

// TestCheckIPLiteral: `fqdngate check --host` with an IPv4 or IPv6
// literal, from a device behind fqdngate, probes the address as given:
// no DNS (fqdngate, the resolver given, would refuse the "name"), an open
// port passes and a closed one is tcp-refused.
func TestCheckIPLiteral(t *testing.T) {
	tp := newTopoClients(t, "enforce", cliClients)
	startEcho(t, tp.inet, 9000)
	// The device resolves the name first, as it would, so that fqdngate
	// opens the addresses for it (the AAAA over IPv6: client scope).
	v4 := tp.addrsOf(t, tp.devA, "www.example.com.", dns.TypeA, gwDevAddr4)[0]
	v6 := tp.addrsOf(t, tp.devA, "www.example.com.", dns.TypeAAAA, gwDevAddr6)[0]
	hosts := []string{v4.String() + ":9000", "[" + v6.String() + "]:9000", v4.String() + ":9001"}
	out, err := tp.devA.Command(binary, "check", "--host", hosts[0], "--host", hosts[1], "--host", hosts[2],
		"--dns", gwDevAddr4, "--timeout", "2s", "--json").Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("check should exit 3 (the closed port is required): %v\n%s", err, out)
	}
	var rep check.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := []struct {
		key, status, cause string
		addr               netip.Addr
	}{
		{v4.String() + " tcp/9000", "pass", "", v4},
		{v6.String() + " tcp/9000", "pass", "", v6},
		{v4.String() + " tcp/9001", "fail", check.CauseTCPRefused, v4},
	}
	if len(rep.Results) != len(want) {
		t.Fatalf("%d results: %s", len(rep.Results), out)
	}
	for i, w := range want {
		r := rep.Results[i]
		cause := ""
		if len(r.Findings) > 0 {
			cause = r.Findings[0].Cause
		}
		if r.Target.String() != w.key || r.Status != w.status || cause != w.cause || r.DNS != nil || r.Addr != w.addr {
			t.Errorf("%s: %s %s %+v (dns %+v, addr %s), want %s %s %q", hosts[i], r.Target, r.Status, r.Findings, r.DNS, r.Addr, w.key, w.status, w.cause)
		}
	}
}
