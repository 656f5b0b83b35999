package policy

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func mustRule(t testing.TB, name string, ports []string, patterns ...string) *Rule {
	t.Helper()
	r := &Rule{Name: name, Source: "config"}
	for _, s := range patterns {
		p, err := ParsePattern(s)
		if err != nil {
			t.Fatal(err)
		}
		r.Patterns = append(r.Patterns, p)
	}
	for _, s := range ports {
		p, err := ParsePort(s)
		if err != nil {
			t.Fatal(err)
		}
		r.Ports = append(r.Ports, p)
	}
	return r
}

func TestClientGroupsLongestPrefixWins(t *testing.T) {
	wide := &Group{Name: "lab", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")},
		Rules: []*Rule{mustRule(t, "wide-rule", []string{"tcp/443"}, "wide.example.com")}}
	narrow := &Group{Name: "sphere", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/26")},
		Rules: []*Rule{mustRule(t, "narrow-rule", []string{"tcp/8883"}, "narrow.example.com")}}
	p, err := New([]*Group{wide, narrow})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		client string
		group  string
	}{
		{"192.0.2.10", "sphere"},
		{"192.0.2.63", "sphere"},
		{"192.0.2.64", "lab"},
		{"::ffff:192.0.2.10", "sphere"},
		{"2001:db8:1::10", "lab"},
		{"198.51.100.1", ""},
		{"2001:db9::1", ""},
	}
	for _, tc := range tests {
		g := p.GroupOf(netip.MustParseAddr(tc.client))
		got := ""
		if g != nil {
			got = g.Name
		}
		if got != tc.group {
			t.Errorf("GroupOf(%s) = %q, want %q", tc.client, got, tc.group)
		}
	}
	// A group only sees its own rules.
	if d := p.Match(netip.MustParseAddr("192.0.2.10"), "wide.example.com."); d.Allowed() {
		t.Errorf("sphere client allowed a lab-only name")
	}
	if d := p.Match(netip.MustParseAddr("198.51.100.1"), "wide.example.com."); d.Allowed() || d.Group != nil {
		t.Errorf("client outside every group got %+v", d)
	}
}

func TestDuplicatePrefixRejected(t *testing.T) {
	a := &Group{Name: "a", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}
	b := &Group{Name: "b", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.7/24")}}
	_, err := New([]*Group{a, b})
	if err == nil || !strings.Contains(err.Error(), `192.0.2.0/24 is in both "a" and "b"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestDecisionUnionOfRules(t *testing.T) {
	g := &Group{Name: "g", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, Rules: []*Rule{
		mustRule(t, "blobs", []string{"tcp/443"}, "*.blob.core.windows.net"),
		mustRule(t, "witness", []string{"tcp/443", "tcp/80"}, "witness.blob.core.windows.net"),
		mustRule(t, "other", []string{"udp/123"}, "time.example.com"),
	}}
	p, err := New([]*Group{g})
	if err != nil {
		t.Fatal(err)
	}
	d := p.Match(netip.MustParseAddr("192.0.2.1"), "Witness.Blob.Core.Windows.Net.")
	if got, want := d.RuleNames(), []string{"blobs", "witness"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("rules = %v, want %v", got, want)
	}
	var ports []string
	for _, pr := range d.Ports() {
		ports = append(ports, pr.String())
	}
	if want := []string{"tcp/443", "tcp/80"}; !reflect.DeepEqual(ports, want) {
		t.Fatalf("ports = %v, want %v", ports, want)
	}
}

// A name that one rule allows gets that rule's ports as a union would
// give them: a port named twice is one port (one kernel element).
func TestDecisionOneRulePortsWithoutRepeats(t *testing.T) {
	g := &Group{Name: "g", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, Rules: []*Rule{
		mustRule(t, "hub", []string{"tcp/8883", "tcp/443", "tcp/8883"}, "*.azure-devices.net"),
	}}
	p, err := New([]*Group{g})
	if err != nil {
		t.Fatal(err)
	}
	var ports []string
	for _, pr := range p.Match(netip.MustParseAddr("192.0.2.1"), "hub.azure-devices.net.").Ports() {
		ports = append(ports, pr.String())
	}
	if want := []string{"tcp/8883", "tcp/443"}; !reflect.DeepEqual(ports, want) {
		t.Fatalf("ports = %v, want %v", ports, want)
	}
}

func TestParsePort(t *testing.T) {
	tests := []struct {
		in      string
		want    PortRange
		wantErr string
	}{
		{"tcp/443", PortRange{ProtoTCP, 443, 443}, ""},
		{"UDP/123", PortRange{ProtoUDP, 123, 123}, ""},
		{"tcp/8000-8100", PortRange{ProtoTCP, 8000, 8100}, ""},
		{"tcp/1-65535", PortRange{ProtoTCP, 1, 65535}, ""},
		{"443", PortRange{}, "want PROTO/PORT"},
		{"icmp/1", PortRange{}, "not tcp or udp"},
		{"tcp/0", PortRange{}, "not a port number"},
		{"tcp/65536", PortRange{}, "not a port number"},
		{"tcp/https", PortRange{}, "not a port number"},
		{"tcp/100-50", PortRange{}, "below its start"},
		{"tcp/-5", PortRange{}, "not a port number"},
	}
	for _, tc := range tests {
		got, err := ParsePort(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParsePort(%q) err = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParsePort(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}
