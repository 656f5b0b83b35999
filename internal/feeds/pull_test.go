package feeds

import (
	"bytes"
	"flag"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var t0 = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

func mustPattern(t testing.TB, s string) policy.Pattern {
	t.Helper()
	p, err := policy.ParsePattern(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func rule(t testing.TB, name string, patterns ...string) *policy.Rule {
	r := &policy.Rule{Name: name, Source: "config", Ports: []policy.PortRange{{Proto: policy.ProtoTCP, Lo: 443, Hi: 443}}}
	for _, s := range patterns {
		r.Patterns = append(r.Patterns, mustPattern(t, s))
	}
	return r
}

func testPolicy(t testing.TB) *policy.Policy {
	t.Helper()
	pol, err := policy.New([]*policy.Group{
		{Name: "sphere", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/26")}, Rules: []*policy.Rule{
			rule(t, "hub", "contoso-hub.azure-devices.net"),
			rule(t, "bus", "azgn*.servicebus.windows.net", "*.blob.core.windows.net"),
		}},
		{Name: "cams", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.64/26")}, Rules: []*policy.Rule{
			rule(t, "hub", "contoso-hub.azure-devices.net"),
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// testLedger: two sphere devices, a camera, and one expired answer.
func testLedger() *ledger.Ledger {
	l := ledger.New(ledger.Options{})
	rec := func(client, group, name string, rules []string, expires time.Duration, addrs ...string) {
		a := ledger.Answer{Client: netip.MustParseAddr(client), Group: group, Name: name, Rules: rules,
			Ports: []policy.PortRange{{Proto: policy.ProtoTCP, Lo: 443, Hi: 443}}, TTL: 20 * time.Second, Expires: t0.Add(expires)}
		for _, s := range addrs {
			a.Addrs = append(a.Addrs, netip.MustParseAddr(s))
		}
		l.Record(t0.Add(-time.Minute), a)
	}
	rec("192.0.2.10", "sphere", "contoso-hub.azure-devices.net", []string{"hub"}, time.Minute, "203.0.113.20", "2001:db8::20")
	rec("192.0.2.11", "sphere", "contoso-hub.azure-devices.net", []string{"hub"}, 2*time.Minute, "203.0.113.20")
	rec("192.0.2.11", "sphere", "azgn1.servicebus.windows.net", []string{"bus"}, time.Minute, "198.51.100.7", "198.51.100.10")
	rec("192.0.2.12", "sphere", "old.blob.core.windows.net", []string{"bus"}, -time.Second, "198.51.100.99")
	rec("192.0.2.70", "cams", "contoso-hub.azure-devices.net", []string{"hub"}, time.Minute, "203.0.113.21")
	return l
}

func testPull(t testing.TB, widen bool) *Pull {
	pol := testPolicy(t)
	return NewPull(PullOptions{Ledger: testLedger(), Policy: func() *policy.Policy { return pol }, Widen: widen, Now: func() time.Time { return t0 },
		Tokens: []Token{
			{Name: "pan", Secret: "s3cret-pan", Feeds: []string{FeedIP, FeedDomain}, Clients: []string{"sphere"}},
			{Name: "cp", Secret: "s3cret-cp", Feeds: []string{FeedCheckpoint}, Clients: []string{"sphere", "cams"}},
		}})
}

func get(h http.Handler, target, secret string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", target, nil)
	if secret != "" {
		r.SetBasicAuth("panorama", secret)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestFeedFormats(t *testing.T) {
	tests := []struct {
		name, target, secret, golden string
		widen                        bool
	}{
		{"ip, all live of the group", "/feeds/v1/ip?client=sphere", "s3cret-pan", "ip-sphere.txt", false},
		{"ip, one rule", "/feeds/v1/ip?client=sphere&rule=bus", "s3cret-pan", "ip-sphere-bus.txt", false},
		{"ip, IPv6 only", "/feeds/v1/ip?client=sphere&family=6", "s3cret-pan", "ip-sphere-6.txt", false},
		{"ip, IPv4 only", "/feeds/v1/ip?client=sphere&family=4", "s3cret-pan", "ip-sphere-4.txt", false},
		{"domain, strict", "/feeds/v1/domain?client=sphere", "s3cret-pan", "domain-sphere.txt", false},
		{"domain, widened", "/feeds/v1/domain?client=sphere", "s3cret-pan", "domain-sphere-widen.txt", true},
		{"checkpoint", "/feeds/v1/checkpoint?client=sphere", "s3cret-cp", "checkpoint-sphere.json", false},
		{"checkpoint, another group", "/feeds/v1/checkpoint?client=cams", "s3cret-cp", "checkpoint-cams.json", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := get(testPull(t, tc.widen), tc.target, tc.secret)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			golden(t, tc.golden, w.Body.Bytes())
		})
	}
}

func TestDomainLeftOutIsReported(t *testing.T) {
	w := get(testPull(t, false), "/feeds/v1/domain?client=sphere", "s3cret-pan")
	if got := w.Header().Get("X-Fqdngate-Left-Out"); got != "azgn*.servicebus.windows.net" {
		t.Errorf("X-Fqdngate-Left-Out = %q", got)
	}
	if strings.Contains(w.Body.String(), "servicebus") {
		t.Errorf("a pattern the list cannot hold is listed without widen:\n%s", w.Body)
	}
}

func TestDomainLine(t *testing.T) {
	tests := []struct {
		pattern string
		widen   bool
		line    string
		widened bool
	}{
		{"contoso-hub.azure-devices.net", false, "^contoso-hub.azure-devices.net", false},
		{"Contoso-Hub.Azure-Devices.NET.", false, "^contoso-hub.azure-devices.net", false},
		{"*.blob.core.windows.net", false, "*.blob.core.windows.net", false},
		{"azgn*.servicebus.windows.net", false, "", false},
		{"azgn*.servicebus.windows.net", true, "*.servicebus.windows.net", true},
		{"*-prod.example.com", true, "*.example.com", true},
		{"bücher.example.com", false, "^xn--bcher-kva.example.com", false},
	}
	for _, tc := range tests {
		t.Run(tc.pattern, func(t *testing.T) {
			d := domainLine(mustPattern(t, tc.pattern), tc.widen)
			if d.Line != tc.line || d.Widened != tc.widened {
				t.Errorf("got %q widened %v, want %q widened %v", d.Line, d.Widened, tc.line, tc.widened)
			}
		})
	}
}

func TestETag(t *testing.T) {
	p := testPull(t, false)
	first := get(p, "/feeds/v1/ip?client=sphere", "s3cret-pan")
	etag := first.Header().Get("ETag")
	if etag == "" || first.Header().Get("Cache-Control") == "" {
		t.Fatalf("no ETag or Cache-Control: %v", first.Header())
	}
	tests := []struct {
		name, target, inm string
		want              int
	}{
		{"same set: not modified", "/feeds/v1/ip?client=sphere", etag, http.StatusNotModified},
		{"weak form and a list", "/feeds/v1/ip?client=sphere", `"other", W/` + etag, http.StatusNotModified},
		{"another set: the body", "/feeds/v1/ip?client=sphere&rule=bus", etag, http.StatusOK},
		{"stale tag", "/feeds/v1/ip?client=sphere", `"0000"`, http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := get(p, tc.target, "s3cret-pan", "If-None-Match", tc.inm)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d", w.Code, tc.want)
			}
			if tc.want == http.StatusNotModified && w.Body.Len() != 0 {
				t.Errorf("304 with a body")
			}
		})
	}
	// The same set later, with less lifetime left, is the same body.
	p.o.Now = func() time.Time { return t0.Add(30 * time.Second) }
	if w := get(p, "/feeds/v1/ip?client=sphere", "s3cret-pan", "If-None-Match", etag); w.Code != http.StatusNotModified {
		t.Errorf("status %d after 30 s with the same live set, want 304", w.Code)
	}
	// One address expires: a new body.
	p.o.Now = func() time.Time { return t0.Add(90 * time.Second) }
	w := get(p, "/feeds/v1/ip?client=sphere", "s3cret-pan", "If-None-Match", etag)
	if w.Code != http.StatusOK || w.Body.String() != "203.0.113.20\n" {
		t.Errorf("after expiry: status %d body %q, want 200 and only the address still live", w.Code, w.Body)
	}
}

func TestFeedAuth(t *testing.T) {
	p := testPull(t, false)
	bearer := func(s string) []string { return []string{"Authorization", "Bearer " + s} }
	tests := []struct {
		name, target, secret string
		hdr                  []string
		want                 int
	}{
		{"basic", "/feeds/v1/ip?client=sphere", "s3cret-pan", nil, http.StatusOK},
		{"bearer", "/feeds/v1/ip?client=sphere", "", bearer("s3cret-pan"), http.StatusOK},
		{"no credential", "/feeds/v1/ip?client=sphere", "", nil, http.StatusUnauthorized},
		{"wrong secret", "/feeds/v1/ip?client=sphere", "s3cret-pa", nil, http.StatusUnauthorized},
		{"wrong bearer", "/feeds/v1/ip?client=sphere", "", bearer("nope"), http.StatusUnauthorized},
		{"another group", "/feeds/v1/ip?client=cams", "s3cret-pan", nil, http.StatusForbidden},
		{"another feed", "/feeds/v1/checkpoint?client=sphere", "s3cret-pan", nil, http.StatusForbidden},
		{"no client", "/feeds/v1/ip", "s3cret-pan", nil, http.StatusBadRequest},
		{"bad family", "/feeds/v1/ip?client=sphere&family=5", "s3cret-pan", nil, http.StatusBadRequest},
		{"unknown rule", "/feeds/v1/ip?client=sphere&rule=nope", "s3cret-pan", nil, http.StatusNotFound},
		{"unknown group", "/feeds/v1/checkpoint?client=nobody", "s3cret-cp", nil, http.StatusForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := get(p, tc.target, tc.secret, tc.hdr...)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.want, w.Body)
			}
			if tc.want == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate: PAN-OS and FortiGate send Basic only when asked")
			}
			if tc.want != http.StatusOK && strings.Contains(w.Body.String(), "203.0.113") {
				t.Errorf("refused, yet addresses in the body: %s", w.Body)
			}
		})
	}
}

func TestObjectIDStable(t *testing.T) {
	a, b := objectID("sphere", "hub"), objectID("sphere", "hub")
	if a != b || a == objectID("sphere", "bus") || a == objectID("spher", "ehub") {
		t.Errorf("ids not stable or not distinct: %s %s", a, objectID("sphere", "bus"))
	}
	if len(a) != 36 || a[14] != '5' {
		t.Errorf("%s is not a version-5 UUID", a)
	}
}
