package gateway

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/fqdngate/fqdngate/internal/config"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// TestStaticSpec: a static rule's client networks are its group's, less
// the networks of groups nested in them.
func TestStaticSpec(t *testing.T) {
	c, err := config.Parse("t.yaml", []byte(`mode: enforce
upstreams: ["198.51.100.53"]
clients:
  - name: site
    cidrs: ["192.0.2.0/24", "2001:db8:1::/64"]
    rules:
      - name: hub
        ports: ["tcp/8883", "tcp/443"]
        static:
          cidrs: ["203.0.113.64/28", "203.0.113.64/29"]
  - name: lab
    cidrs: ["192.0.2.128/25"]
  - name: elsewhere
    cidrs: ["198.51.100.0/24"]
`))
	if err != nil {
		t.Fatal(err)
	}
	got := staticSpec(c)
	if len(got) != 1 {
		t.Fatalf("%d static rules", len(got))
	}
	r := got[0]
	want := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8:1::/64")}
	if r.Name != "site/hub" || !slices.Equal(r.Clients, want) || !slices.Equal(r.Except, []netip.Prefix{netip.MustParsePrefix("192.0.2.128/25")}) ||
		!slices.Equal(r.Dests, []netip.Prefix{netip.MustParsePrefix("203.0.113.64/28")}) ||
		!slices.Equal(r.Ports, []policy.PortRange{{Proto: policy.ProtoTCP, Lo: 8883, Hi: 8883}, {Proto: policy.ProtoTCP, Lo: 443, Hi: 443}}) {
		t.Errorf("static rule %+v", r)
	}
}
