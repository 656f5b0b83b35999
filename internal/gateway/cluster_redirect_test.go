package gateway

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/fqdngate/fqdngate/internal/config"
)

// TestClusterRedirectTargets: in a cluster, clients' DNS to other servers
// is redirected (nft redirect: an unspecified target with the port of the
// first listen address clients can reach) to an address the node holds,
// never dnatted to the VIP it may not hold; outside a cluster, nothing
// changes. A node whose listen.dns holds no address of its own is warned.
func TestClusterRedirectTargets(t *testing.T) {
	held := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::2")}
	const cluster = "cluster:\n  name: site1\n  node: gw1\n  nats: embedded\n"
	tests := []struct {
		name       string
		hook       string
		listen     string
		cluster    bool
		dns4, dns6 string
		warnings   []string // substrings, one warning line each
	}{
		{"no cluster: dnat to the first address", "forward", `["192.0.2.1:53", "192.0.2.2:53"]`, false, "192.0.2.1:53", "", nil},
		{"VIP first, own address second", "forward", `["192.0.2.1:53", "192.0.2.2:53", "[2001:db8::1]:5353", "[2001:db8::2]:5353"]`, true,
			"0.0.0.0:53", "[::]:5353", nil},
		{"port of the first non-loopback address", "forward", `["127.0.0.1:53", "192.0.2.2:5300"]`, true, "0.0.0.0:5300", "", nil},
		{"wildcard listener", "forward", `["0.0.0.0:53"]`, true, "0.0.0.0:53", "", nil},
		{"only the VIP", "forward", `["192.0.2.1:53"]`, true, "0.0.0.0:53", "",
			[]string{`cluster: no IPv4 listen.dns address is one this host holds`}},
		{"only VIPs of both families", "forward", `["192.0.2.1:53", "[2001:db8::1]:53"]`, true, "0.0.0.0:53", "[::]:53",
			[]string{`no IPv4 listen.dns address`, `no IPv6 listen.dns address`}},
		{"hook output keeps its target", "output", `["127.0.0.1:53"]`, true, "127.0.0.1:53", "", nil},
	}
	defer func(f func() ([]netip.Addr, error)) { interfaceAddrs = f }(interfaceAddrs)
	interfaceAddrs = func() ([]netip.Addr, error) { return held, nil }
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			y := "mode: enforce\nlisten:\n  dns: " + tc.listen + "\nupstreams: [\"198.51.100.53\"]\nenforcer:\n  hook: " + tc.hook +
				"\nclients:\n  - name: devices\n    cidrs: [\"192.0.2.0/24\"]" +
				"\n    rules:\n      - name: hub\n        fqdn: [\"contoso-hub.azure-devices.net\"]\n        ports: [\"tcp/443\"]\n"
			if tc.cluster {
				y += cluster
			}
			c, err := config.Parse("t.yaml", []byte(y))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			spec := specOf(c, slog.New(slog.NewTextHandler(&out, nil)))
			if got := addrOr(spec.DNS4); got != tc.dns4 {
				t.Errorf("IPv4 redirect target %q, want %q", got, tc.dns4)
			}
			if got := addrOr(spec.DNS6); got != tc.dns6 {
				t.Errorf("IPv6 redirect target %q, want %q", got, tc.dns6)
			}
			var warns []string
			for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				if strings.Contains(l, "cluster:") {
					warns = append(warns, l)
				}
			}
			if len(warns) != len(tc.warnings) {
				t.Fatalf("cluster warnings:\n%s\nwant %d with %q", strings.Join(warns, "\n"), len(tc.warnings), tc.warnings)
			}
			for i, w := range tc.warnings {
				if !strings.Contains(warns[i], w) {
					t.Errorf("warning %q, want %q", warns[i], w)
				}
			}
			if got := len(clusterListen(c)); got != map[bool]int{true: 1}[tc.cluster] {
				t.Errorf("%d listen options, want the free bind exactly in a cluster", got)
			}
		})
	}
}
