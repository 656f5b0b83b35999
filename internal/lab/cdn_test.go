package lab

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeWriter captures the reply and pretends the query came from src.
type fakeWriter struct {
	dns.ResponseWriter
	src netip.Addr
	msg *dns.Msg
}

func (w *fakeWriter) RemoteAddr() net.Addr      { return &net.UDPAddr{IP: w.src.AsSlice(), Port: 5353} }
func (w *fakeWriter) WriteMsg(m *dns.Msg) error { w.msg = m; return nil }

func ask(a *AuthDNS, src, name string, qtype uint16) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	w := &fakeWriter{src: netip.MustParseAddr(src)}
	a.ServeDNS(w, q)
	return w.msg
}

func addrsOf(m *dns.Msg) []netip.Addr {
	var out []netip.Addr
	for _, rr := range m.Answer {
		switch v := rr.(type) {
		case *dns.A:
			out = append(out, netip.MustParseAddr(v.A.String()))
		case *dns.AAAA:
			out = append(out, netip.MustParseAddr(v.AAAA.String()))
		}
	}
	return out
}

func TestAuthDNSBehavesLikeTheCDN(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	a := NewAuthDNS(SphereSites("hub1"), 20*time.Second)
	a.Clock = func() time.Time { return now }
	const (
		fw     = "198.51.100.1" // geo 1
		corp   = "198.51.100.3" // geo 3
		update = "prod.update.sphere.azure.net"
	)
	if GeoOf(netip.MustParseAddr(fw)) == GeoOf(netip.MustParseAddr(corp)) {
		t.Fatal("the lab's two resolvers share a geo")
	}
	m := ask(a, corp, update, dns.TypeA)
	if len(m.Answer) != 2+AnswerAddrs {
		t.Fatalf("want two CNAME hops and %d addresses, got %v", AnswerAddrs, m.Answer)
	}
	if c, ok := m.Answer[1].(*dns.CNAME); !ok || c.Target[:1] != "e" {
		t.Errorf("second hop is not the akamai-like name: %v", m.Answer[1])
	}
	corpAddrs := addrsOf(m)
	fwAddrs := addrsOf(ask(a, fw, update, dns.TypeA))
	for _, c := range corpAddrs {
		for _, f := range fwAddrs {
			if c == f {
				t.Errorf("geo pools overlap: %s", c)
			}
		}
		if !netip.MustParsePrefix("203.0.113.0/24").Contains(c) {
			t.Errorf("%s outside 203.0.113.0/24", c)
		}
	}
	if again := addrsOf(ask(a, corp, update, dns.TypeA)); again[0] != corpAddrs[0] {
		t.Errorf("same geo, same period, different answer: %v vs %v", again, corpAddrs)
	}
	now = now.Add(20 * time.Second)
	if next := addrsOf(ask(a, corp, update, dns.TypeA)); next[0] == corpAddrs[0] {
		t.Errorf("no rotation after one TTL: %v", next)
	}
	// Distinct addresses over the pool: at least 64 across geos.
	seen := map[netip.Addr]bool{}
	for range 100 {
		now = now.Add(20 * time.Second)
		for _, src := range []string{"198.51.100.4", "198.51.100.5", "198.51.100.6", "198.51.100.7"} {
			for _, ad := range addrsOf(ask(a, src, update, dns.TypeA)) {
				seen[ad] = true
			}
		}
	}
	if len(seen) < 64 {
		t.Errorf("only %d distinct CDN addresses", len(seen))
	}
	// Stable names: one address for everyone, at any time.
	s1 := addrsOf(ask(a, fw, "prod.core.sphere.azure.net", dns.TypeA))
	s2 := addrsOf(ask(a, corp, "prod.core.sphere.azure.net", dns.TypeA))
	if len(s1) != 1 || s1[0] != s2[0] {
		t.Errorf("stable name differs by geo: %v %v", s1, s2)
	}
	if v6 := addrsOf(ask(a, fw, update, dns.TypeAAAA)); len(v6) != AnswerAddrs || !netip.MustParsePrefix("2001:db8:cd::/64").Contains(v6[0]) {
		t.Errorf("AAAA: %v", v6)
	}
	if m := ask(a, fw, "secret.x.attacker.example", dns.TypeA); m.Rcode != dns.RcodeNameError {
		t.Errorf("unknown name: %s", dns.RcodeToString[m.Rcode])
	}
	if a.Count("secret.x.attacker.example") != 1 || a.CountSuffix("attacker.example") != 1 {
		t.Errorf("counts: %d %d", a.Count("secret.x.attacker.example"), a.CountSuffix("attacker.example"))
	}
}

func TestCAIssuesBySNI(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf("Prod.Core.Sphere.Azure.Net")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(leaf.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "prod.core.sphere.azure.net", Roots: ca.Pool()}); err != nil {
		t.Errorf("leaf does not verify: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "evil.example", Roots: ca.Pool()}); err == nil {
		t.Error("leaf verifies for another name")
	}
	if _, err := ca.ServerConfig().GetCertificate(&tls.ClientHelloInfo{}); err == nil {
		t.Error("a certificate without SNI")
	}
}

func TestAuthDNSWildcardZone(t *testing.T) {
	a := NewAuthDNS(append(SphereSites("hub1"), Site{Name: "*.flood.example", Kind: Stable}), 20*time.Second)
	tests := []struct {
		name  string
		rcode int
	}{
		{"r1.flood.example", dns.RcodeSuccess},
		{"a.b.flood.example", dns.RcodeSuccess},
		{"flood.example", dns.RcodeNameError}, // the wildcard is below the zone, as in the policy
		{"r1.flood.example.other", dns.RcodeNameError},
	}
	for _, tc := range tests {
		m := ask(a, "198.51.100.3", tc.name, dns.TypeA)
		if m.Rcode != tc.rcode {
			t.Errorf("%s: %s, want %s", tc.name, dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.rcode])
		}
		if tc.rcode == dns.RcodeSuccess && (len(m.Answer) != 1 || m.Answer[0].Header().Name != dns.Fqdn(tc.name)) {
			t.Errorf("%s: answer %v, want one A of the name asked", tc.name, m.Answer)
		}
	}
	seen := map[netip.Addr]bool{}
	for i := range 50 {
		for _, ad := range addrsOf(ask(a, "198.51.100.3", fmt.Sprintf("r%d.flood.example", i), dns.TypeA)) {
			seen[ad] = true
		}
	}
	if len(seen) < 10 {
		t.Errorf("50 names under the wildcard share %d addresses; want them spread", len(seen))
	}
}
