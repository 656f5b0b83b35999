package api

import (
	"encoding/json"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/dnsproxy"
	"github.com/fqdngate/fqdngate/internal/monitor"
	"github.com/fqdngate/fqdngate/internal/policy"
)

func testPolicy(t testing.TB) PolicyView {
	t.Helper()
	pat, err := policy.ParsePattern("www.example.com")
	if err != nil {
		t.Fatal(err)
	}
	port, _ := policy.ParsePort("tcp/443")
	hub, _ := policy.ParsePattern("*.azure-devices.net")
	mqtt, _ := policy.ParsePort("tcp/8883")
	p, err := policy.New([]*policy.Group{{Name: "devices", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
		Rules: []*policy.Rule{
			{Name: "web", Source: "config", Patterns: []policy.Pattern{pat}, Ports: []policy.PortRange{port}},
			{Name: "iot-hub", Source: "catalog azure-iot, seed 001 line 15", Patterns: []policy.Pattern{hub}, Ports: []policy.PortRange{mqtt}},
		}}})
	if err != nil {
		t.Fatal(err)
	}
	return PolicyView{Policy: p, Profiles: map[string][]string{"devices": {"azure-iot"}}}
}

func TestStatus(t *testing.T) {
	h, _, mon := newAPI(t, true)
	// A second client, refused: in no group.
	mon.Query(dnsproxy.Outcome{Time: time.Now(), Client: netip.MustParseAddr("198.51.100.7"), Name: "x.example.", Decision: dnsproxy.DecisionRefused})
	code, body := get(t, h, "/api/v1/status")
	var s StatusResponse
	if code != 200 || json.Unmarshal([]byte(body), &s) != nil {
		t.Fatalf("status: %d %s", code, body)
	}
	if s.Mode != "enforce" || s.Uptime < 59 || s.Clients != 2 || s.Ungrouped != 1 || !s.Ready {
		t.Errorf("status: %+v", s)
	}
	if len(s.Groups) != 1 || s.Groups[0].Name != "devices" || s.Groups[0].Clients != 1 || s.Groups[0].Rules != 2 {
		t.Errorf("groups: %+v", s.Groups)
	}
	// newAPI counted one allowed query in the metrics.
	if s.QueriesTotal != 1 || s.Queries["allowed"] != 1 || s.LedgerEntries != 1 {
		t.Errorf("counters: %+v", s)
	}
	if _, ok := s.Drops["never-resolved"]; !ok || len(s.Drops) != len(monitor.Reasons) {
		t.Errorf("drops by reason: %v, want every reason", s.Drops)
	}
	if len(s.Upstreams) != 1 || s.Upstreams[0].Addr != "198.51.100.53:53" {
		t.Errorf("upstreams: %+v", s.Upstreams)
	}
}

func TestClients(t *testing.T) {
	h, _, mon := newAPI(t, true)
	mon.Query(dnsproxy.Outcome{Time: time.Now(), Client: netip.MustParseAddr("192.0.2.10"), Group: "devices", Name: "evil.example.", Decision: dnsproxy.DecisionDenied})
	_, body := get(t, h, "/api/v1/clients")
	var r ClientsResponse
	if json.Unmarshal([]byte(body), &r) != nil || len(r.Clients) != 1 {
		t.Fatalf("clients: %s", body)
	}
	if c := r.Clients[0]; c.Addr != netip.MustParseAddr("192.0.2.10") || c.Queries != 2 || c.Denied != 1 || c.Group != "devices" {
		t.Errorf("client: %+v", c)
	}
	if _, body := get(t, h, "/api/v1/clients?group=other"); !strings.Contains(body, `"clients": []`) {
		t.Errorf("group filter: %s", body)
	}
}

func TestPolicyEndpoint(t *testing.T) {
	h, _, _ := newAPI(t, true)
	_, body := get(t, h, "/api/v1/policy")
	var r PolicyResponse
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Profiles) != 1 || r.Profiles[0] != "azure-iot" || len(r.Groups) != 1 {
		t.Fatalf("policy: %+v", r)
	}
	g := r.Groups[0]
	want := []PolicyRule{
		{Name: "web", Source: "config", Patterns: []string{"www.example.com"}, Ports: []string{"tcp/443"}},
		{Name: "iot-hub", Source: "catalog azure-iot, seed 001 line 15", Patterns: []string{"*.azure-devices.net"}, Ports: []string{"tcp/8883"}},
	}
	if len(g.Rules) != 2 || g.Rules[0].Source != want[0].Source || g.Rules[1].Source != want[1].Source ||
		g.Rules[1].Patterns[0] != want[1].Patterns[0] || g.Rules[1].Ports[0] != "tcp/8883" {
		t.Errorf("rules: %+v, want %+v", g.Rules, want)
	}
}

// TestConsoleFiles: the console is served, loads nothing from another
// origin, and has no inline script or style (the CSP would block them,
// so the page would break if any crept in).
func TestConsoleFiles(t *testing.T) {
	h, _, _ := newAPI(t, true)
	if code, _ := get(t, h, "/"); code != 302 {
		t.Errorf("GET /: %d, want a redirect to /ui/", code)
	}
	code, html := get(t, h, "/ui/")
	if code != 200 || !strings.Contains(html, `<script src="app.js" defer></script>`) {
		t.Fatalf("GET /ui/: %d %q", code, html)
	}
	if m := regexp.MustCompile(`<script[^>]*>[^<]+</script>|<style|\sstyle=|\son[a-z]+=`).FindString(html); m != "" {
		t.Errorf("index.html has inline code or style: %q", m)
	}
	for _, f := range []string{"index.html", "app.js", "style.css"} {
		code, body := get(t, h, "/ui/"+f)
		if code != 200 && !(f == "index.html" && code == 301) {
			t.Errorf("GET /ui/%s: %d", f, code)
		}
		if m := regexp.MustCompile(`(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/`).FindString(body); m != "" {
			t.Errorf("%s refers to another origin: %q", f, m)
		}
	}
	_, js := get(t, h, "/ui/app.js")
	// The rule that keeps names from becoming markup.
	if strings.Contains(js, ".innerHTML") || strings.Contains(js, "outerHTML") || strings.Contains(js, "insertAdjacentHTML") || strings.Contains(js, "document.write") {
		t.Error("app.js writes HTML from strings")
	}
}

// BenchmarkStatus is the cost of one overview poll (each open console
// asks once a second).
func BenchmarkStatus(b *testing.B) {
	h, _, _ := newAPI(b, true)
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/status", nil))
	}
}
