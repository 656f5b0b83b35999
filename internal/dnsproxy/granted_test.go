package dnsproxy

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// TestGranted is what a reload keeps of each ledger entry: the answer's
// own checks (chain, private addresses) apply to what was told before.
func TestGranted(t *testing.T) {
	p := answersPolicy(t)
	open, plain := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.200")
	priv, pub := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("203.0.113.5")
	tests := []struct {
		name  string
		told  ledger.Told
		ok    bool
		ports []policy.PortRange
		rules []string
	}{
		{"public address: every matching rule", ledger.Told{Client: open, Name: "mixed.example.com", Addr: pub},
			true, []policy.PortRange{tcp8883, tcp443}, []string{"privlink", "web"}},
		{"private address: only the rules that allow it", ledger.Told{Client: open, Name: "mixed.example.com", Addr: priv},
			true, []policy.PortRange{tcp8883}, []string{"privlink"}},
		{"private address where no rule allows it", ledger.Told{Client: plain, Name: "mixed.example.com", Addr: priv}, false, nil, nil},
		{"chain through the pinned CDN", ledger.Told{Client: open, Name: "a.pin.example.com", Chain: []string{"x.edge.example"}, Addr: pub},
			true, []policy.PortRange{tcp443}, []string{"pinned"}},
		{"chain elsewhere", ledger.Told{Client: open, Name: "a.pin.example.com", Chain: []string{"y.cdn.example"}, Addr: pub}, false, nil, nil},
		{"denied name", ledger.Told{Client: open, Name: "evil.example.com", Addr: pub}, false, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ports, rules, ok := Granted(p, tc.told)
			if ok != tc.ok || !slices.Equal(ports, tc.ports) || !slices.Equal(rules, tc.rules) {
				t.Fatalf("Granted = %v %v %v, want %v %v %v", ports, rules, ok, tc.ports, tc.rules, tc.ok)
			}
		})
	}
}
