package scenario

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/config"
	"github.com/fqdngate/fqdngate/internal/lab"
)

var update = flag.Bool("update", false, "rewrite testdata/report.golden")

func stat(host, proto string, port uint16, tries, ok, blocked int, addrs ...string) *lab.Stat {
	s := &lab.Stat{Endpoint: lab.Endpoint{Host: host, Proto: proto, Port: port}, Attempts: tries, OK: ok, Blocked: blocked,
		BlockedAddrs: make(map[netip.Addr]int)}
	for _, a := range addrs {
		s.BlockedAddrs[netip.MustParseAddr(a)]++
	}
	return s
}

// TestReport pins the demo's table: the README shows it and operators
// compare runs by it.
func TestReport(t *testing.T) {
	r := &Result{
		Options: Options{Duration: time.Minute},
		Classic: &lab.DeviceReport{
			Stats: []*lab.Stat{
				stat("prod.update.sphere.azure.net", "tcp", 80, 30, 0, 30, "203.0.113.170", "203.0.113.171"),
				stat("prod.core.sphere.azure.net", "tcp", 443, 30, 30, 0),
				stat("time.sphere.azure.net", "udp", 123, 30, 28, 2, "203.0.113.230"),
			},
			Session: lab.SessionStat{Endpoint: lab.Endpoint{Host: "contoso-fleet.azure-devices.net", Proto: "tcp", Port: 8883}, Opened: 2, Messages: 20, Failures: 1, LastErr: "i/o timeout"},
			Probes:  map[string]string{"a.x.attacker.example": "NXDOMAIN", "telemetry.vendor.example": "NOERROR"},
		},
		Gate: &lab.DeviceReport{
			Stats: []*lab.Stat{
				stat("prod.update.sphere.azure.net", "tcp", 80, 30, 30, 0),
				stat("prod.core.sphere.azure.net", "tcp", 443, 30, 30, 0),
				stat("time.sphere.azure.net", "udp", 123, 30, 30, 0),
			},
			Session: lab.SessionStat{Endpoint: lab.Endpoint{Host: "contoso-fleet.azure-devices.net", Proto: "tcp", Port: 8883}, Opened: 1, Messages: 30},
			Probes:  map[string]string{"b.x.attacker.example": "NXDOMAIN", "telemetry.vendor.example": "NXDOMAIN"},
		},
		ClassicResolved:       []netip.Addr{netip.MustParseAddr("203.0.113.230")},
		ClassicBlockedPackets: 32,
		ClassicExfil:          "a.x.attacker.example", GateExfil: "b.x.attacker.example",
		ClassicExfilUpstream: 1, Outside: "telemetry.vendor.example",
		FrontingName:    "prod.core.sphere.azure.net",
		ClassicFronting: Fronting{Addr: netip.MustParseAddr("203.0.113.20"), Passed: true},
		GateFronting: Fronting{Addr: netip.MustParseAddr("203.0.113.20"), Reset: true, Reason: "sni-mismatch",
			Message: `server name "www.other-site.example" was not answered with 203.0.113.20 to 192.0.2.138; answered for it: [prod.core.sphere.azure.net]`},
	}
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "report.golden")
	if *update {
		_ = os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("report changed (go test -update to accept):\n%s", b.String())
	}
	for _, s := range []string{
		"3 distinct addresses blocked, 2 of them never seen by its own resolver",
		"VERDICT: the classic FQDN firewall blocked 32 of 90 allowed connections (36%); fqdngate blocked 0 of 90 (0%)",
		"broken: opened 2 time(s), 20 messages, 1 failures",
		"classic firewall: let through: TLS handshake with www.other-site.example completed at 203.0.113.20",
		"fqdngate:         reset at 203.0.113.20 and explained: sni-mismatch: server name \"www.other-site.example\" was not answered",
	} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("report lacks %q", s)
		}
	}
}

// TestGateConfig: the lab's fqdngate config is generated; it must stay
// valid as the config schema and the catalog change, and allow exactly
// the device's endpoints.
func TestGateConfig(t *testing.T) {
	c, err := config.Parse("lab.yaml", []byte(gateConfig("/var/lib/fqdngate-lab")))
	if err != nil {
		t.Fatalf("%v\n%s", err, gateConfig("/var/lib/fqdngate-lab"))
	}
	eps, session, err := Endpoints()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range append(eps, session) {
		d := c.Derived.Policy.Match(lab.GateDevice, e.Host)
		if !d.Allowed() {
			t.Errorf("%s is not allowed for the lab device", e)
		}
	}
	if d := c.Derived.Policy.Match(lab.GateDevice, "telemetry.vendor.example"); d.Allowed() {
		t.Errorf("the name outside every profile is allowed")
	}
}
