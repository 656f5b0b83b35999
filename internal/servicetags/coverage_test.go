package servicetags

import (
	"bytes"
	"context"
	"flag"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func testIndex(t *testing.T) *Index {
	t.Helper()
	f, err := Load("testdata/ServiceTags_Public_test.json")
	if err != nil {
		t.Fatal(err)
	}
	f.Path = "ServiceTags_Public_test.json"
	return NewIndex(f)
}

// labObserved is what a lab's ledger held: a hub in its tag, a CDN name on
// the CDN's addresses, a name with one address in a tag and one not.
var labObserved = []Observed{
	{Name: "prod.update.sphere.azure.net", Addrs: addrs("192.0.2.77", "192.0.2.78", "2001:db8:ff00::1")},
	{Name: "contoso-hub.azure-devices.net", Addrs: addrs("203.0.113.70", "2001:db8:1:4::17", "203.0.113.70")},
	{Name: "management.azure.com", Addrs: addrs("198.51.100.33", "192.0.2.5")},
	{Name: "login.microsoftonline.com"},
}

func TestBuildCoverage(t *testing.T) {
	x := testIndex(t)
	r := BuildCoverage(CoverageInput{Index: x, Source: "test", Observed: labObserved})
	want := map[string]string{
		"prod.update.sphere.azure.net":  None,
		"contoso-hub.azure-devices.net": Covered,
		"management.azure.com":          Partial,
	}
	for _, ep := range r.Endpoints {
		if ep.Coverage != want[ep.Name] {
			t.Errorf("%s: %s, want %s", ep.Name, ep.Coverage, want[ep.Name])
		}
	}
	if len(r.Endpoints) != 3 || !slices.Equal(r.Unobserved, []string{"login.microsoftonline.com"}) {
		t.Fatalf("endpoints %d, unobserved %v", len(r.Endpoints), r.Unobserved)
	}
	hub := r.Endpoints[0]
	if hub.Name != "contoso-hub.azure-devices.net" || hub.Used != 2 || hub.TagRule == nil ||
		!slices.Equal(hub.TagRule.Tags, []string{"AzureIoTHub.EastUS"}) || hub.TagRule.Opens != (Breadth{V4: 16, V6: 1}) {
		t.Errorf("hub: %+v %+v", hub, hub.TagRule)
	}
	if !slices.Equal(r.Answer.TagRule, []string{"contoso-hub.azure-devices.net"}) ||
		!slices.Equal(r.Answer.FQDNOnly, []string{"management.azure.com", "prod.update.sphere.azure.net"}) {
		t.Errorf("answer %+v", r.Answer)
	}
}

// TestCoverageGolden: the report as the user sees it, on a terminal and in
// JSON, with and without origin ASes.
func TestCoverageGolden(t *testing.T) {
	asn, err := LoadASN("testdata/asn.txt")
	if err != nil {
		t.Fatal(err)
	}
	v4only := []Observed{
		{Name: "prod.update.sphere.azure.net", Addrs: addrs("192.0.2.77", "192.0.2.78")},
		{Name: "contoso-hub.azure-devices.net", Addrs: addrs("203.0.113.70", "203.0.113.71")},
		{Name: "management.azure.com", Addrs: addrs("198.51.100.33", "192.0.2.5")},
	}
	tests := []struct {
		name string
		in   CoverageInput
	}{
		{"lab", CoverageInput{Source: "the daemon's ledger at http://127.0.0.1:9053", Observed: labObserved}},
		{"asn", CoverageInput{Source: "resolved now through 198.51.100.53:53", Observed: v4only, ASN: asn, Unresolvable: []string{"*.azure-devices.net"}}},
		{"empty", CoverageInput{Source: "the daemon's ledger at http://127.0.0.1:9053", Observed: []Observed{{Name: "a.example.net"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Index = testIndex(t)
			r := BuildCoverage(tt.in)
			var table, js bytes.Buffer
			if err := r.WriteTable(&table); err != nil {
				t.Fatal(err)
			}
			if err := r.WriteJSON(&js); err != nil {
				t.Fatal(err)
			}
			golden(t, "coverage_"+tt.name+".txt", table.Bytes())
			golden(t, "coverage_"+tt.name+".json", js.Bytes())
		})
	}
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
		t.Fatalf("%v (run go test -update once)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestGroup(t *testing.T) {
	pat := func(s string) policy.Pattern {
		p, err := policy.ParsePattern(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	entries := []NameAddr{
		{"a.devices.example.net", netip.MustParseAddr("192.0.2.1")},
		{"a.devices.example.net", netip.MustParseAddr("192.0.2.2")},
		{"b.devices.example.net", netip.MustParseAddr("192.0.2.3")},
		{"other.example.org", netip.MustParseAddr("192.0.2.4")},
	}
	tests := []struct {
		name     string
		patterns []policy.Pattern
		want     []string // name:count
	}{
		{"all", nil, []string{"a.devices.example.net:2", "b.devices.example.net:1", "other.example.org:1"}},
		{"wildcard", []policy.Pattern{pat("*.devices.example.net"), pat("never.example.com")},
			[]string{"a.devices.example.net:2", "b.devices.example.net:1", "never.example.com:0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, o := range Group(entries, tt.patterns) {
				got = append(got, o.Name+":"+string(rune('0'+len(o.Addrs))))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestResolve asks a DNS server on loopback that answers with a CNAME
// chain, as a recursive resolver does.
func TestResolve(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		name := q.Question[0].Name
		switch {
		case name == "cdn.example.net." && q.Question[0].Qtype == dns.TypeA:
			m.Answer = append(m.Answer,
				&dns.CNAME{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 60}, Target: "edge.example.org."},
				&dns.A{Hdr: dns.RR_Header{Name: "edge.example.org.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 20}, A: net.ParseIP("198.51.100.7")})
		case name == "cdn.example.net.":
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: 20}, AAAA: net.ParseIP("2001:db8::7")})
		default:
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	var pats []policy.Pattern
	for _, s := range []string{"cdn.example.net", "gone.example.net", "*.example.com"} {
		p, err := policy.ParsePattern(s)
		if err != nil {
			t.Fatal(err)
		}
		pats = append(pats, p)
	}
	obs, wild, errs := Resolve(context.Background(), pc.LocalAddr().String(), pats, 2*time.Second)
	if len(obs) != 2 || obs[0].Name != "cdn.example.net" || !slices.Equal(obs[0].Addrs, addrs("198.51.100.7", "2001:db8::7")) {
		t.Errorf("observed %+v", obs)
	}
	if len(obs[1].Addrs) != 0 || len(errs) != 1 {
		t.Errorf("gone.example.net: %+v, errors %v", obs[1], errs)
	}
	if !slices.Equal(wild, []string{"*.example.com"}) {
		t.Errorf("wildcards %v", wild)
	}
}
