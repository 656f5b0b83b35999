package enforce

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/fqdngate/fqdngate/internal/lab/labtest"
	"github.com/fqdngate/fqdngate/internal/policy"
)

func pfxs(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func rangesString(rs []addrRange) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, r.lo.String()+"-"+r.hi.String())
	}
	return strings.Join(parts, " ")
}

func TestSubtract(t *testing.T) {
	tests := []struct {
		ps, except []string
		v6         bool
		want       string
	}{
		{[]string{"192.0.2.0/24"}, nil, false, "192.0.2.0-192.0.2.255"},
		{[]string{"192.0.2.0/24"}, []string{"192.0.2.64/26"}, false, "192.0.2.0-192.0.2.63 192.0.2.128-192.0.2.255"},
		{[]string{"192.0.2.0/24"}, []string{"192.0.2.0/25", "192.0.2.255/32"}, false, "192.0.2.128-192.0.2.254"},
		{[]string{"192.0.2.0/25"}, []string{"192.0.2.0/24"}, false, ""},
		{[]string{"192.0.2.0/24", "192.0.2.0/26", "198.51.100.0/31"}, []string{"203.0.113.0/24"}, false, "192.0.2.0-192.0.2.255 198.51.100.0-198.51.100.1"},
		{[]string{"192.0.2.0/24", "2001:db8::/64"}, []string{"2001:db8::/65"}, true, "2001:db8:0:0:8000::-2001:db8::ffff:ffff:ffff:ffff"},
	}
	for _, tt := range tests {
		if got := rangesString(subtract(pfxs(tt.ps...), pfxs(tt.except...), tt.v6)); got != tt.want {
			t.Errorf("subtract(%v, %v) = %q, want %q", tt.ps, tt.except, got, tt.want)
		}
	}
}

func TestMergePorts(t *testing.T) {
	udp123 := policy.PortRange{Proto: policy.ProtoUDP, Lo: 123, Hi: 123}
	in := []policy.PortRange{{Proto: policy.ProtoTCP, Lo: 8000, Hi: 8100}, tcp443, udp123, {Proto: policy.ProtoTCP, Lo: 8101, Hi: 8200},
		{Proto: policy.ProtoTCP, Lo: 8050, Hi: 8060}, {Proto: policy.ProtoTCP, Lo: 65535, Hi: 65535}, tcp443}
	want := []policy.PortRange{tcp443, {Proto: policy.ProtoTCP, Lo: 8000, Hi: 8200}, {Proto: policy.ProtoTCP, Lo: 65535, Hi: 65535}, udp123}
	if got := mergePorts(in); !slices.Equal(got, want) {
		t.Errorf("mergePorts = %v, want %v", got, want)
	}
}

func TestStaticElements(t *testing.T) {
	r := StaticRule{Clients: pfxs("192.0.2.0/24", "2001:db8:1::/64"), Except: pfxs("192.0.2.128/25"),
		Dests: pfxs("203.0.113.64/28", "203.0.113.64/30", "2001:db8:5::/64"), Ports: []policy.PortRange{tcp443, tcpRng}}
	tests := []struct {
		v6, global bool
		n          int
		first      string // key and key end of the first element
	}{
		{false, false, 2, "c0000200cb00714006000000 01bb0000 .. c000027fcb00714f06000000 01bb0000"},
		{false, true, 2, "cb00714006000000 01bb0000 .. cb00714f06000000 01bb0000"},
		{true, false, 2, ""},
	}
	for _, tt := range tests {
		els := staticElements(r, tt.v6, tt.global)
		if len(els) != tt.n {
			t.Errorf("v6=%v global=%v: %d elements, want %d", tt.v6, tt.global, len(els), tt.n)
			continue
		}
		if tt.first != "" {
			got := fmt.Sprintf("%x %x .. %x %x", els[0].Key[:len(els[0].Key)-4], els[0].Key[len(els[0].Key)-4:], els[0].KeyEnd[:len(els[0].KeyEnd)-4], els[0].KeyEnd[len(els[0].KeyEnd)-4:])
			if got != tt.first {
				t.Errorf("v6=%v global=%v: first element %s, want %s", tt.v6, tt.global, got, tt.first)
			}
		}
	}
}

// TestStaticInKernel: the kernel takes the static sets (two rules with the
// same prefixes, nested client networks, a port range) and nft lists them
// as the ranges they are.
func TestStaticInKernel(t *testing.T) {
	labtest.Require(t, "ip", "nft")
	ns := labtest.NS(t, "stat")
	spec := testSpec()
	spec.Static = []StaticRule{
		{Name: "devices/hub", Clients: pfxs("192.0.2.0/24", "2001:db8:1::/64"), Except: pfxs("192.0.2.192/26"),
			Dests: pfxs("203.0.113.64/28", "2001:db8:5::/64"), Ports: []policy.PortRange{tcp443, tcpRng}},
		{Name: "devices/same", Clients: pfxs("192.0.2.0/24"), Dests: pfxs("203.0.113.64/28"), Ports: []policy.PortRange{tcp443}},
	}
	openInNS(t, ns, spec)
	out, err := ns.Run("nft", "list", "table", "inet", "fqdngate")
	if err != nil {
		t.Fatal(err)
	}
	flat := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{
		"set static4_0 {",
		"192.0.2.0-192.0.2.191 . 203.0.113.64/28 . tcp . 443",
		"192.0.2.0-192.0.2.191 . 203.0.113.64/28 . tcp . 8000-8100",
		"set static6_0 {",
		"2001:db8:1::/64 . 2001:db8:5::/64 . tcp . 443",
		"set static4_1 {",
		"ip saddr . ip daddr . meta l4proto . th dport @static4_0 accept",
		"ip6 saddr . ip6 daddr . meta l4proto . th dport @static6_0 accept",
		"ip saddr . ip daddr . meta l4proto . th dport @static4_1 accept",
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(flat, "static6_1") {
		t.Error("a rule without IPv6 prefixes got an IPv6 set")
	}
}
