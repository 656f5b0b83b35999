package check

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/catalog"
)

var update = flag.Bool("update", false, "rewrite testdata/report.golden.json")

func TestParseHostPort(t *testing.T) {
	tests := []struct {
		in   string
		want Target
		err  bool
	}{
		{"Contoso.azure-devices.net:8883", Target{Host: "contoso.azure-devices.net", Proto: "tcp", Port: 8883, Required: true}, false},
		{"time.example:udp/123", Target{Host: "time.example", Proto: "udp", Port: 123, Required: true}, false},
		{"example.com", Target{}, true},
		{"example.com:0", Target{}, true},
		{"example.com:icmp/1", Target{}, true},
		{":443", Target{}, true},
		{"bad host:443", Target{}, true},
		{"203.0.113.7:443", Target{Host: "203.0.113.7", Proto: "tcp", Port: 443, Required: true}, false},
		{"[2001:DB8::7]:443", Target{Host: "2001:db8::7", Proto: "tcp", Port: 443, Required: true}, false},
		{"[2001:db8::7]:udp/123", Target{Host: "2001:db8::7", Proto: "udp", Port: 123, Required: true}, false},
		{"[203.0.113.7]:443", Target{}, true},
		{"[2001:db8::7]443", Target{}, true},
		{"[fe80::1%eth0]:443", Target{}, true},
		{"2001:db8::7:443", Target{}, true},
	}
	for _, tc := range tests {
		got, err := ParseHostPort(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%q: %+v %v, want %+v", tc.in, got, err, tc.want)
		}
	}
}

// selfSigned makes a CA-less certificate for name valid between nb and na.
func selfSigned(t *testing.T, cn string, names []string, nb, na time.Time) (tls.Certificate, *x509.Certificate) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: cn}, DNSNames: names,
		NotBefore: nb, NotAfter: na, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, c
}

// serveTLS accepts on loopback with cfg and returns the port.
func serveTLS(t *testing.T, cfg *tls.Config) uint16 {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// TestHandshakeFindings: expiry, version and trust, each its own finding,
// against servers on loopback (the probe's TLS step on its own).
func TestHandshakeFindings(t *testing.T) {
	now := time.Now()
	expired, expCert := selfSigned(t, "svc.example", []string{"svc.example"}, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	good, goodCert := selfSigned(t, "svc.example", []string{"svc.example"}, now.Add(-time.Hour), now.Add(time.Hour))
	roots := x509.NewCertPool()
	roots.AddCert(expCert)
	roots.AddCert(goodCert)
	tests := []struct {
		name  string
		cfg   *tls.Config
		roots *x509.CertPool
		want  []string
	}{
		{"expired", &tls.Config{Certificates: []tls.Certificate{expired}}, roots, []string{CauseTLSExpired}},
		{"tls 1.1", &tls.Config{Certificates: []tls.Certificate{good}, MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11}, roots, []string{CauseTLSVersion}},
		{"untrusted but expected name", &tls.Config{Certificates: []tls.Certificate{good}}, x509.NewCertPool(), []string{CauseTLSUntrusted}},
		{"good", &tls.Config{Certificates: []tls.Certificate{good}}, roots, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			port := serveTLS(t, tc.cfg)
			conn, err := net.Dial("tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			r := Result{Target: Target{Host: "svc.example", Proto: "tcp", Port: 443}, Addr: netip.MustParseAddr("127.0.0.1")}
			handshake(conn, &r, Options{Roots: tc.roots, ExpectedIssuers: []string{"svc.example"}, Now: time.Now})
			var got []string
			for _, f := range r.Findings {
				got = append(got, f.Cause)
			}
			if len(got) != len(tc.want) || (len(got) > 0 && got[0] != tc.want[0]) {
				t.Errorf("findings %+v, want %v", r.Findings, tc.want)
			}
		})
	}
}

// TestReportSchema pins the JSON schema operators' tools parse.
func TestReportSchema(t *testing.T) {
	rs := []Result{
		{Target: Target{Profile: "azure-sphere", Host: "prod.core.sphere.azure.net", Proto: "tcp", Port: 443, Required: true, Purpose: "web services"},
			Status: "fail", Addr: netip.MustParseAddr("203.0.113.7"),
			DNS: &DNSResult{Server: "198.51.100.53:53", Rcode: "NOERROR", Chain: []string{"edge.example", "e1.akamai.example"},
				Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.7")}, TTL: 20},
			TLS: &TLSResult{Version: "TLS 1.3", Chain: []string{"prod.core.sphere.azure.net"}, Issuer: "Contoso TLS Inspection CA",
				Root: "Contoso TLS Inspection CA", NotAfter: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
			Findings: []Finding{{CauseTLSIntercept, "the chain ends at \"Contoso TLS Inspection CA\""}}, Millis: 12},
		{Target: Target{Profile: "azure-sphere", Host: "*.servicebus.windows.net", Proto: "tcp", Port: 443},
			Status: "skip", Findings: []Finding{{CauseWildcard, "cannot be probed"}}},
		{Target: Target{Host: "www.example.com", Proto: "tcp", Port: 80, Required: true}, Status: "pass", HTTP: 200, Millis: 3},
	}
	var b bytes.Buffer
	if err := WriteJSON(&b, rs); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "report.golden.json")
	if *update {
		os.MkdirAll("testdata", 0o755)
		os.WriteFile(path, b.Bytes(), 0o644)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("JSON schema changed (raise SchemaVersion if it must; -update to accept):\n%s", b.String())
	}
}

func TestRunBoundsAndDeadline(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rs := Run(ctx, []Target{{Host: "a.example", Proto: "tcp", Port: 443, Required: true}, {Host: "*.b.example", Proto: "tcp", Port: 443}},
		Options{DNS: "127.0.0.1:1", Timeout: 100 * time.Millisecond, Parallel: 1})
	s := Summarize(rs)
	if s.Total != 2 || s.RequiredFailed != 1 {
		t.Errorf("summary %+v: %+v", s, rs)
	}
}

// TestIPLiteralNoDNS: an IP literal is dialled as given; the resolver is
// never asked (every UDP dial fails the test).
func TestIPLiteralNoDNS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	open, err := ParseHostPort(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	closed, err := ParseHostPort("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	d := &net.Dialer{}
	opt := Options{DNS: "192.0.2.53:53", Timeout: 2 * time.Second, Parallel: 2,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if network != "tcp" {
				t.Errorf("dialled %s %s: an IP literal needs no DNS", network, addr)
				return nil, errors.New("no DNS in this test")
			}
			return d.DialContext(ctx, network, addr)
		}}
	rs := Run(context.Background(), []Target{open, closed}, opt)
	if r := rs[0]; r.Status != "pass" || r.DNS != nil || r.Addr.String() != "127.0.0.1" {
		t.Errorf("open port: %+v", r)
	}
	if r := rs[1]; r.Status != "fail" || r.DNS != nil || len(r.Findings) != 1 || r.Findings[0].Cause != CauseTCPRefused {
		t.Errorf("127.0.0.1:1: %+v", r)
	}
}

func TestProfileTargets(t *testing.T) {
	cat, err := catalog.Default()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		profiles []string
		values   map[string]string
		want     string // the first target, and how many
		err      bool
	}{
		{[]string{"azure-sphere-ntp"}, nil, "prod.time.sphere.azure.net udp/123 2", false},
		{[]string{"azure-sphere-ntp", "azure-sphere-ntp"}, nil, "prod.time.sphere.azure.net udp/123 2", false},
		{[]string{"azure-iot-hub"}, map[string]string{"iot_hub": "contoso-hub"}, "contoso-hub.azure-devices.net tcp/8883 3", false},
		{[]string{"azure-iot-hub"}, nil, "", true},
		{[]string{"azure-spere"}, nil, "", true},
	}
	for _, tc := range tests {
		ts, err := ProfileTargets(cat, tc.profiles, catalog.CloudPublic, tc.values)
		got := ""
		if len(ts) > 0 {
			got = fmt.Sprintf("%s %d", ts[0], len(ts))
		}
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%v: %q %v, want %q", tc.profiles, got, err, tc.want)
		}
	}
}
