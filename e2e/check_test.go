package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/check"
	"github.com/fqdngate/fqdngate/internal/lab"
	"github.com/fqdngate/fqdngate/internal/lab/labtest"
	"github.com/fqdngate/fqdngate/internal/lab/scenario"
)

// TestCheck runs `fqdngate check` from a device in the CDN lab against
// the fake Sphere endpoints: the reachable ones pass; a port a firewall
// drops is tcp-timeout; a name whose TLS an inspecting proxy re-signs is
// tls-intercepted naming the proxy's CA (trusted by the device, as in an
// enterprise); a wrong-name certificate is tls-hostname; an unknown name is
// dns-nxdomain. Every address is inside the lab's namespaces.
func TestCheck(t *testing.T) {
	labtest.Require(t, "ip", "nft", "sysctl")
	l, err := lab.Up(lab.SphereSites(scenario.Hub), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	proxy, err := lab.NewCA("Contoso TLS Inspection CA")
	if err != nil {
		t.Fatal(err)
	}
	intercepted, err := proxy.Leaf("prod.core.sphere.azure.net")
	if err != nil {
		t.Fatal(err)
	}
	l.CA.Override("prod.core.sphere.azure.net", intercepted)
	wrong, err := l.CA.Leaf("wrong.example")
	if err != nil {
		t.Fatal(err)
	}
	l.CA.Override("prod.deviceauth.sphere.azure.net", wrong)
	// The customer's firewall drops tcp/8443 on the way.
	if out, err := l.ClassicGW.Run("nft", "add table inet t; add chain inet t f { type filter hook forward priority 0; }; add rule inet t f tcp dport 8443 drop"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	cafile := filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(cafile, append(l.CA.PEM(), proxy.PEM()...), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := l.ClassicDev.Command(binary, "check", "--profile", "azure-sphere",
		"--host", "prod.device.core.sphere.azure.net:8443", "--host", "nothere.example:443", "--host", "time.sphere.azure.net:udp/123",
		"--dns", lab.UpstreamDNS.String(), "--ca-file", cafile, "--expect-issuer", "fqdngate lab CA",
		"--timeout", "1s", "--json")
	out, err := cmd.Output()
	var ee *exec.ExitError
	if err == nil || !asExitError(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("check should exit 3 with failures: %v\n%s", err, out)
	}
	var rep check.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := map[string]string{
		"prod.core.sphere.azure.net tcp/443":         check.CauseTLSIntercept,
		"prod.deviceauth.sphere.azure.net tcp/443":   check.CauseTLSHostname,
		"prod.device.core.sphere.azure.net tcp/8443": check.CauseTCPTimeout,
		"nothere.example tcp/443":                    check.CauseDNSNXDomain,
	}
	for _, r := range rep.Results {
		key := r.Target.String()
		cause, failing := want[key]
		switch {
		case failing && (r.Status != "fail" || len(r.Findings) == 0 || r.Findings[0].Cause != cause):
			t.Errorf("%s: %s %+v, want %s", key, r.Status, r.Findings, cause)
		case !failing && r.Status != "pass":
			t.Errorf("%s: %s %+v, want pass", key, r.Status, r.Findings)
		}
		if key == "prod.core.sphere.azure.net tcp/443" && (r.TLS == nil || r.TLS.Root != "Contoso TLS Inspection CA" ||
			!strings.Contains(r.Findings[0].Detail, `intercepted by "Contoso TLS Inspection CA"`)) {
			t.Errorf("interception not named: %+v %+v", r.TLS, r.Findings)
		}
		if key == "prod.update.sphere.azure.net tcp/80" && (r.HTTP != 200 || len(r.DNS.Chain) != 2) {
			t.Errorf("http endpoint: status %d chain %v", r.HTTP, r.DNS.Chain)
		}
	}
	if s := rep.Summary; s.Total != 20 || s.Failed != 4 || s.RequiredFailed != 4 || rep.Schema != 1 {
		t.Errorf("summary %+v (schema %d)", s, rep.Schema)
	}
	// The table says the same to a person.
	table, _ := l.ClassicDev.Command(binary, "check", "--profile", "azure-sphere", "--host", "nothere.example:443",
		"--dns", lab.UpstreamDNS.String(), "--ca-file", cafile, "--expect-issuer", "fqdngate lab CA", "--timeout", "1s").Output()
	t.Logf("check table:\n%s", table)
	if !strings.Contains(string(table), "FAIL") || !strings.Contains(string(table), "dns-nxdomain") || !strings.Contains(string(table), "3 required endpoint(s) failed") {
		t.Errorf("table:\n%s", table)
	}
}

func asExitError(err error, target **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*target = e
	return ok
}
