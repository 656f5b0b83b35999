package upstream

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		in   string
		want Spec
		err  string // a part of the error; "" for success
	}{
		{in: "198.51.100.53", want: Spec{Addr: ap("198.51.100.53:53")}},
		{in: "198.51.100.53:5353", want: Spec{Addr: ap("198.51.100.53:5353")}},
		{in: "2001:db8::53", want: Spec{Addr: ap("[2001:db8::53]:53")}},
		{in: "[2001:db8::53]:5353", want: Spec{Addr: ap("[2001:db8::53]:5353")}},
		{in: "::ffff:198.51.100.53", want: Spec{Addr: ap("198.51.100.53:53")}},
		{in: "tls://198.51.100.54#dns.lab.example", want: Spec{Addr: ap("198.51.100.54:853"), TLS: true, ServerName: "dns.lab.example"}},
		{in: "tls://198.51.100.54:8853#DNS.Lab.Example.", want: Spec{Addr: ap("198.51.100.54:8853"), TLS: true, ServerName: "dns.lab.example"}},
		{in: "tls://[2001:db8::54]:853#dns.lab.example", want: Spec{Addr: ap("[2001:db8::54]:853"), TLS: true, ServerName: "dns.lab.example"}},
		{in: "tls://2001:db8::54#dns.lab.example", want: Spec{Addr: ap("[2001:db8::54]:853"), TLS: true, ServerName: "dns.lab.example"}},
		{in: "tls://198.51.100.54:853", err: "needs the name its certificate carries"},
		{in: "tls://198.51.100.54#", err: "needs the name"},
		{in: "tls://198.51.100.54#198.51.100.54", err: "is an address"},
		{in: "tls://198.51.100.54#bad_name.example", err: "not a host name"},
		{in: "tls://dns.example#dns.example", err: "names are not accepted"},
		{in: "https://198.51.100.54", err: "the only scheme is tls://"},
		{in: "198.51.100.53#dns.example", err: "only for tls://"},
		{in: "dns.example", err: "not an IP address"},
		{in: "198.51.100.53:0", err: "not a number in 1..65535"},
		{in: "198.51.100.53:70000", err: "not a number in 1..65535"},
		{in: "2001:db8::53:5353:x", err: "not an IP address"},
		{in: "[198.51.100.53]:53", err: "not an IP address"},
		{in: "fe80::1%eth0", err: "zoned address"},
		{in: "[fe80::1%eth0]:53", err: "zoned"},
		{in: "", err: "not an IP address"},
	} {
		got, err := ParseSpec(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want one saying %q", tc.in, err, tc.err)
		case tc.err == "" && got != tc.want:
			t.Errorf("%q: %+v, want %+v", tc.in, got, tc.want)
		}
		if err == nil {
			if again, err := ParseSpec(got.String()); err != nil || again != got {
				t.Errorf("%q: String %q reads back as %+v, %v", tc.in, got.String(), again, err)
			}
		}
	}
}

func TestLoadCAFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, err string }{
		{filepath.Join(dir, "missing.pem"), "read CA file"},
		{bad, "holds no PEM certificate"},
	} {
		if _, err := LoadCAFile(tc.path); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want %q", tc.path, err, tc.err)
		}
	}
}
