package api

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fqdngate/fqdngate/internal/dnsproxy"
	"github.com/fqdngate/fqdngate/internal/enforce"
	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/metrics"
	"github.com/fqdngate/fqdngate/internal/monitor"
	"github.com/fqdngate/fqdngate/internal/policy"
)

func newAPI(t testing.TB, ready bool) (http.Handler, *ledger.Ledger, *monitor.Monitor) {
	t.Helper()
	return newAPIWith(t, ready, nil)
}

// newAPIWith is newAPI behind sec, with one group and one upstream for
// the console's endpoints.
func newAPIWith(t testing.TB, ready bool, sec *Security) (http.Handler, *ledger.Ledger, *monitor.Monitor) {
	t.Helper()
	led := ledger.New(ledger.Options{})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	mon := monitor.New(led, monitor.Options{}, log)
	met := metrics.New(metrics.Sources{Ledger: led.Stats, Drops: mon.Counts})
	h := Handler(Deps{Ledger: led, Monitor: mon, Registry: met.Registry, Log: log,
		Ready: func() (bool, string) { return ready, "table missing" },
		Mode:  "enforce", Started: time.Now().Add(-time.Minute), Upstreams: []string{"198.51.100.53:53"},
		Policy: func() PolicyView { return testPolicy(t) }, Security: sec})
	now := time.Now()
	a := ledger.Answer{Client: netip.MustParseAddr("192.0.2.10"), Group: "devices", Name: "www.example.com",
		Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.5")}, Rules: []string{"web"},
		Ports: []policy.PortRange{{Proto: unix.IPPROTO_TCP, Lo: 443, Hi: 443}}, TTL: 20 * time.Second, Expires: now.Add(time.Minute)}
	led.Record(now, a)
	mon.Query(dnsproxy.Outcome{Time: now, Client: a.Client, Group: "devices", Name: "www.example.com.", Decision: dnsproxy.DecisionAllowed, Answer: &a})
	met.Query(dnsproxy.Outcome{Decision: dnsproxy.DecisionAllowed, Group: "devices", Install: 40 * time.Microsecond})
	return h, led, mon
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func TestEndpoints(t *testing.T) {
	h, _, _ := newAPI(t, true)
	tests := []struct {
		path string
		code int
		body string
	}{
		{"/healthz", 200, "ok"},
		{"/readyz", 200, "ready"},
		{"/metrics", 200, `fqdngate_dns_queries_total{decision="allowed",group="devices"} 1`},
		{"/metrics", 200, "fqdngate_ledger_entries 1"},
		{"/metrics", 200, `fqdngate_drops_total{reason="never-resolved"} 0`},
		{"/api/v1/ledger", 200, `"name": "www.example.com"`},
		{"/api/v1/ledger?name=WWW.Example.COM.", 200, `"addr": "203.0.113.5"`},
		{"/api/v1/ledger?client=192.0.2.11", 200, `"entries": []`},
		{"/api/v1/ledger?client=nope", 400, `"param": "client"`},
		{"/api/v1/ledger?limit=0", 400, `"param": "limit"`},
		{"/api/v1/events?since=0", 200, `"decision": "allowed"`},
		{"/api/v1/events?since=x", 400, `"param": "since"`},
		{"/api/v1/events?kind=drop", 200, `"events": []`},
		{"/api/v1/events?kind=query&client=192.0.2.10&outcome=allowed&name=WWW.example.com", 200, `"name": "www.example.com"`},
		{"/api/v1/events?client=192.0.2.11", 200, `"events": []`},
		{"/api/v1/events?kind=dns", 400, `"param": "kind"`},
		{"/api/v1/events?name=a..b", 400, `"param": "name"`},
		{"/api/v1/events?client=nope", 400, `"param": "client"`},
		{"/api/v1/explain?addr=203.0.113.5&client=192.0.2.10&port=tcp/443", 200, `"reason": "allowed"`},
		{"/api/v1/explain?addr=203.0.113.5&client=192.0.2.11&port=tcp/443", 200, `"reason": "other-client"`},
		{"/api/v1/explain?addr=203.0.113.5&port=tcp/8443", 200, `"reason": "port"`},
		{"/api/v1/explain?addr=203.0.113.6", 200, `"reason": "never-resolved"`},
		{"/api/v1/explain", 400, `"param": "addr"`},
		{"/api/v1/explain?addr=203.0.113.5&port=tcp/1-2", 400, `"param": "port"`},
		{"/api/v1/names", 200, `"name": "www.example.com"`},
		{"/nope", 404, ""},
	}
	for _, tc := range tests {
		code, body := get(t, h, tc.path)
		if code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("GET %s: %d %q, want %d with %q", tc.path, code, body, tc.code, tc.body)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/v1/ledger", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rec.Code)
	}
}

func TestNotReady(t *testing.T) {
	h, _, _ := newAPI(t, false)
	if code, body := get(t, h, "/readyz"); code != 503 || !strings.Contains(body, "table missing") {
		t.Errorf("readyz: %d %q", code, body)
	}
}

func TestEventsPaging(t *testing.T) {
	h, _, mon := newAPI(t, true)
	for range 5 {
		mon.Query(dnsproxy.Outcome{Time: time.Now(), Decision: dnsproxy.DecisionDenied, Name: "evil.example."})
	}
	_, body := get(t, h, "/api/v1/events?since=2&limit=3")
	var r EventsResponse
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Events) != 3 || r.Events[0].Seq != 3 || r.Next != 5 || r.Lost {
		t.Errorf("page: %+v", r)
	}
}

func TestEventsFilterPaging(t *testing.T) {
	h, _, mon := newAPI(t, true)
	// Events 2..11 after the allowed one of newAPI: the denied ones are 2, 4, 6, 8, 10.
	for i := range 10 {
		d := dnsproxy.DecisionAllowed
		if i%2 == 0 {
			d = dnsproxy.DecisionDenied
		}
		mon.Query(dnsproxy.Outcome{Time: time.Now(), Decision: d, Name: "x.example."})
	}
	page := func(path string) EventsResponse {
		var r EventsResponse
		if _, body := get(t, h, path); json.Unmarshal([]byte(body), &r) != nil {
			t.Fatalf("GET %s: %s", path, body)
		}
		return r
	}
	r := page("/api/v1/events?outcome=denied&limit=2")
	if len(r.Events) != 2 || r.Events[0].Seq != 2 || r.Events[1].Seq != 4 || r.Next != 4 {
		t.Fatalf("first page: %+v", r)
	}
	// The next page starts after the last event looked at, and a page
	// with nothing new after it still moves next past what it scanned.
	r = page("/api/v1/events?outcome=denied&limit=10&since=4")
	if len(r.Events) != 3 || r.Events[0].Seq != 6 || r.Next != 11 {
		t.Fatalf("second page: %+v", r)
	}
	if r = page("/api/v1/events?outcome=refused&since=4"); len(r.Events) != 0 || r.Next != 11 {
		t.Fatalf("page without a match: %+v", r)
	}
}

// TestExplainLatestDrop: asked without a port, explain gives the client's
// latest drop for the address besides what is open now; with a port, it
// explains that port only.
func TestExplainLatestDrop(t *testing.T) {
	h, _, mon := newAPI(t, true)
	client, addr := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("203.0.113.5")
	at := time.Now()
	mon.Attribute(at, enforce.PrefixDrop, monitor.Packet{Src: client, Dst: addr, Proto: unix.IPPROTO_TCP, Port: 8443})
	tests := []struct {
		path   string
		reason monitor.Reason
		latest string // the latest drop's reason and port, "" for none
	}{
		{"/api/v1/explain?addr=203.0.113.5&client=192.0.2.10", monitor.Allowed, "port tcp/8443"},
		{"/api/v1/explain?addr=203.0.113.5", monitor.Allowed, "port tcp/8443"},
		{"/api/v1/explain?addr=203.0.113.5&client=192.0.2.10&port=tcp/443", monitor.Allowed, ""},
		{"/api/v1/explain?addr=203.0.113.5&client=192.0.2.11", monitor.OtherClient, ""},
	}
	for _, tc := range tests {
		code, body := get(t, h, tc.path)
		var r ExplainResponse
		if err := json.Unmarshal([]byte(body), &r); err != nil || code != 200 {
			t.Fatalf("GET %s: %d %s", tc.path, code, body)
		}
		latest := ""
		if r.LatestDrop != nil {
			latest = string(r.LatestDrop.Reason) + " " + r.LatestDrop.Port
			if !r.LatestDrop.Time.Equal(at.UTC().Truncate(0)) || !strings.Contains(body, `"latest_drop": {`) {
				t.Errorf("GET %s: latest drop at %v, want %v: %s", tc.path, r.LatestDrop.Time, at, body)
			}
		}
		if r.Reason != tc.reason || latest != tc.latest {
			t.Errorf("GET %s: %s, latest %q; want %s, %q\n%s", tc.path, r.Reason, latest, tc.reason, tc.latest, body)
		}
	}
}
