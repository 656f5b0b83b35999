package gateway

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/fqdngate/fqdngate/internal/config"
)

// TestSpecRedirectTargetsAndWarnings: the redirect goes to the first
// listen address of each family that clients can reach, and a client
// family left without one is named in a warning, once, since its DNS to
// other servers is dropped rather than redirected.
func TestSpecRedirectTargetsAndWarnings(t *testing.T) {
	tests := []struct {
		name       string
		hook       string
		listen     string
		cidrs      string
		dns4, dns6 string
		warnings   []string // substrings, one warning line each
	}{
		{"both families served", "forward", `["192.0.2.1:53", "[2001:db8::1]:53"]`, `["192.0.2.0/24", "2001:db8:1::/64"]`,
			"192.0.2.1:53", "[2001:db8::1]:53", nil},
		{"first of each family", "forward", `["192.0.2.1:53", "192.0.2.2:53", "[2001:db8::1]:53"]`, `["192.0.2.0/24"]`,
			"192.0.2.1:53", "[2001:db8::1]:53", nil},
		{"IPv6 clients, no IPv6 listen address", "forward", `["192.0.2.1:53"]`, `["192.0.2.0/24", "2001:db8:1::/64"]`,
			"192.0.2.1:53", "", []string{`no IPv6 listen address that clients can reach`, `clients=2001:db8:1::/64`}},
		{"IPv4-only clients need no IPv6 listen address", "forward", `["192.0.2.1:53"]`, `["192.0.2.0/24"]`,
			"192.0.2.1:53", "", nil},
		{"loopback cannot take forwarded DNS", "forward", `["127.0.0.1:53"]`, `["192.0.2.0/24"]`,
			"", "", []string{`listen address is loopback`, `no IPv4 listen address that clients can reach`}},
		{"loopback serves the host itself", "output", `["127.0.0.1:53"]`, `["127.0.0.0/8", "2001:db8::10/128"]`,
			"127.0.0.1:53", "", []string{`no IPv6 listen address that clients can reach`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			y := "mode: enforce\nlisten:\n  dns: " + tc.listen + "\nupstreams: [\"198.51.100.53\"]\nenforcer:\n  hook: " + tc.hook +
				"\nclients:\n  - name: devices\n    cidrs: " + tc.cidrs +
				"\n    rules:\n      - name: hub\n        fqdn: [\"contoso-hub.azure-devices.net\"]\n        ports: [\"tcp/443\"]\n"
			c, err := config.Parse("t.yaml", []byte(y))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			log := slog.New(slog.NewTextHandler(&out, nil))
			spec := specOf(c, log)
			if got := addrOr(spec.DNS4); got != tc.dns4 {
				t.Errorf("IPv4 redirect target %q, want %q", got, tc.dns4)
			}
			if got := addrOr(spec.DNS6); got != tc.dns6 {
				t.Errorf("IPv6 redirect target %q, want %q", got, tc.dns6)
			}
			warnUnredirected(spec, log)
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if out.Len() == 0 {
				lines = nil
			}
			if len(lines) != countLines(tc.warnings) {
				t.Fatalf("log:\n%s\nwant %d warning lines with %q", out.String(), countLines(tc.warnings), tc.warnings)
			}
			for _, w := range tc.warnings {
				if !strings.Contains(out.String(), w) {
					t.Errorf("log:\n%s\nwants %q", out.String(), w)
				}
			}
		})
	}
}

func addrOr(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// countLines is how many warning lines the substrings stand for: the
// "clients=" detail belongs to the line before it.
func countLines(ws []string) int {
	n := 0
	for _, w := range ws {
		if !strings.HasPrefix(w, "clients=") {
			n++
		}
	}
	return n
}
