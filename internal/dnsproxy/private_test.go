package dnsproxy

import (
	"net/netip"
	"testing"
)

func TestIsInternal(t *testing.T) {
	tests := []struct {
		addr     string
		internal bool
		why      string
	}{
		{"10.0.0.1", true, "RFC 1918 10/8"},
		{"10.255.255.255", true, "RFC 1918 10/8, last"},
		{"172.16.0.1", true, "RFC 1918 172.16/12"},
		{"172.31.255.254", true, "RFC 1918 172.16/12, last"},
		{"172.32.0.1", false, "just past 172.16/12"},
		{"192.168.1.1", true, "RFC 1918 192.168/16"},
		{"127.0.0.1", true, "loopback"},
		{"127.53.0.1", true, "loopback, anywhere in 127/8"},
		{"169.254.169.254", true, "link-local (cloud metadata)"},
		{"0.0.0.0", true, "unspecified"},
		{"0.1.2.3", true, "this network 0/8"},
		{"100.64.0.1", true, "CGNAT 100.64/10"},
		{"100.127.255.255", true, "CGNAT, last"},
		{"100.128.0.1", false, "just past CGNAT"},
		{"192.0.0.8", true, "IETF protocol assignments"},
		{"198.18.0.1", true, "benchmarking 198.18/15"},
		{"198.19.255.255", true, "benchmarking, last"},
		{"224.0.0.251", true, "multicast"},
		{"240.0.0.1", true, "reserved 240/4"},
		{"255.255.255.255", true, "limited broadcast"},
		{"::1", true, "IPv6 loopback"},
		{"::", true, "IPv6 unspecified"},
		{"fc00::1", true, "unique local fc00::/7"},
		{"fd12:3456::1", true, "unique local fd"},
		{"fe80::1", true, "IPv6 link-local"},
		{"fec0::1", true, "site-local"},
		{"ff02::1", true, "IPv6 link-local multicast"},
		{"::ffff:10.0.0.1", true, "IPv4-mapped private"},
		{"::ffff:127.0.0.1", true, "IPv4-mapped loopback"},
		{"::ffff:203.0.113.7", false, "IPv4-mapped public"},
		{"::10.0.0.1", true, "IPv4-compatible private"},
		{"64:ff9b::a00:1", true, "NAT64 of 10.0.0.1"},
		{"64:ff9b::cb00:7107", false, "NAT64 of 203.0.113.7"},
		{"64:ff9b:1::1", true, "local-use NAT64"},
		{"2002:a00:1::1", true, "6to4 of 10.0.0.1"},
		{"2002:cb00:7107::1", false, "6to4 of 203.0.113.7"},
		{"100::1", true, "discard-only"},
		{"2001:2::1", true, "IPv6 benchmarking"},
		{"203.0.113.7", false, "documentation, stands for public"},
		{"198.51.100.1", false, "documentation"},
		{"192.0.2.1", false, "documentation"},
		{"8.8.8.8", false, "public"},
		{"2001:db8::1", false, "IPv6 documentation"},
		{"2606:4700::1111", false, "public IPv6"},
	}
	for _, tc := range tests {
		t.Run(tc.why, func(t *testing.T) {
			if got := isInternal(netip.MustParseAddr(tc.addr)); got != tc.internal {
				t.Errorf("isInternal(%s) = %v, want %v", tc.addr, got, tc.internal)
			}
		})
	}
}

// BenchmarkWithholdInternal checks a CDN answer's four public addresses,
// the work private_answers adds to every answer (compare BenchmarkWalk).
func BenchmarkWithholdInternal(b *testing.B) {
	addrs := []netip.Addr{netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("203.0.113.8"),
		netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("2001:db8:cd::10")}
	w := Walked{Addrs: make([]netip.Addr, len(addrs))}
	b.ReportAllocs()
	for range b.N {
		w.Addrs = append(w.Addrs[:0], addrs...)
		if w.withholdInternal() != 0 {
			b.Fatal(w.Addrs)
		}
	}
}
