package config

import (
	"bytes"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// staticConfig is a file in testdata, so that service_tags resolves
// relative to it.
var staticConfigName = filepath.Join("testdata", "t.yaml")

const staticHead = `mode: enforce
upstreams: ["198.51.100.53"]
clients:
  - name: devices
    cidrs: ["192.0.2.0/24", "2001:db8:1::/64"]
    rules:
      - name: hub
        ports: ["tcp/8883"]
        static:
`

func TestStatic(t *testing.T) {
	c, err := Parse(staticConfigName, []byte(staticHead+`          service_tags: servicetags.json
          tags: [azureiothub.eastus]
          cidrs: ["198.51.100.0/28", "203.0.113.64/30"]
      - name: names
        fqdn: ["contoso-hub.azure-devices.net"]
        ports: ["tcp/443"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Derived.Static) != 1 {
		t.Fatalf("static rules %+v", c.Derived.Static)
	}
	s := c.Derived.Static[0]
	want := []netip.Prefix{netip.MustParsePrefix("198.51.100.0/28"), netip.MustParsePrefix("203.0.113.64/28"), netip.MustParsePrefix("2001:db8:1:4::/64")}
	if s.Group != "devices" || s.Rule != "hub" || !slices.Equal(s.Prefixes, want) || !slices.Equal(s.Tags, []string{"AzureIoTHub.EastUS"}) ||
		s.Breadth.V4 != 32 || s.Breadth.V6 != 1 || len(s.Ports) != 1 || s.ChangeNumber != 342 {
		t.Errorf("static rule %+v", s)
	}
	var out bytes.Buffer
	if err := c.WriteEffective(&out); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"static rules:  at most 65536 addresses each (IPv6 counted in /64s)",
		"  static hub: 32 IPv4 addresses and 1 IPv6 /64 in 3 prefixes on tcp/8883, without DNS: AzureIoTHub.EastUS from testdata/servicetags.json (change 342) and cidrs",
	} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("effective configuration lacks %q:\n%s", line, out.String())
		}
	}
}

// manyCIDRs is n single addresses of the documentation ranges, quoted.
func manyCIDRs(n int) string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf(`"2001:db8:5::%x/128"`, i))
	}
	return strings.Join(out, ", ")
}

func TestStaticErrors(t *testing.T) {
	tests := []struct {
		name string
		body string // after staticHead; the rule's static mapping
		tail string // after the clients
		want []string
	}{
		{"unknown tag", `          service_tags: servicetags.json
          tags: [AzureIoTHub.EastUS, AzureIoTHub.Mars]
`, "", []string{`testdata/t.yaml:11:38: clients[0].rules[0].static.tags[1]: no tag "AzureIoTHub.Mars" in testdata/servicetags.json (change 342)`}},
		{"tag too broad", `          service_tags: servicetags.json
          tags: [AzureCloud]
`, "", []string{`testdata/t.yaml:11:18: clients[0].rules[0].static.tags[0]: tag AzureCloud opens 512 IPv4 addresses and 16,777,216 IPv6 /64s, more than enforcer.static_max_addresses (65,536; IPv6 counts in /64s)`}},
		{"cidr too broad", `          cidrs: ["192.0.2.0/28", "198.0.0.0/15"]
`, "", []string{`testdata/t.yaml:10:35: clients[0].rules[0].static.cidrs[1]: 198.0.0.0/15 opens 131,072 addresses, more than enforcer.static_max_addresses (65,536; IPv6 counts in /64s)`}},
		{"rule too broad", `          cidrs: ["192.0.2.0/28", "198.51.100.0/28"]
`, "enforcer:\n  static_max_addresses: 20\n", []string{`testdata/t.yaml:10:11: clients[0].rules[0].static: the rule's static part opens 32 addresses, more than enforcer.static_max_addresses (20; IPv6 counts in /64s)`}},
		{"host bits", `          cidrs: ["192.0.2.1/28"]
`, "", []string{`testdata/t.yaml:10:19: clients[0].rules[0].static.cidrs[0]: 192.0.2.1/28 has host bits set; did you mean 192.0.2.0/28?`}},
		{"no file", `          tags: [AzureIoTHub.EastUS]
`, "", []string{`testdata/t.yaml:10:11: clients[0].rules[0].static.service_tags: required with tags: a service tags file (ServiceTags_Public_*.json)`}},
		{"missing file", `          service_tags: absent.json
          tags: [AzureIoTHub.EastUS]
`, "", []string{`testdata/t.yaml:10:25: clients[0].rules[0].static.service_tags: cannot read: service tags: open testdata/absent.json: no such file or directory`}},
		{"broken file", `          service_tags: ../../servicetags/testdata/broken_prefix.json
          tags: [Broken]
`, "", []string{`testdata/t.yaml:10:25: clients[0].rules[0].static.service_tags: ../servicetags/testdata/broken_prefix.json: values[0].properties.addressPrefixes[3]: "192.0.2.0/33" is not a prefix`}},
		{"elements", `          cidrs: [` + manyCIDRs(2049) + `]
`, "", []string{`testdata/t.yaml:10:11: clients[0].rules[0].static: the static rules need up to 2049 kernel elements with this one (2049 here: client networks × prefixes × ports), more than 2048; use fewer prefixes, ports or client networks`}},
		{"empty", `          cidrs: []
`, "", []string{`testdata/t.yaml:10:11: clients[0].rules[0].static: needs tags or cidrs`}},
		{"limit", `          cidrs: ["192.0.2.0/28"]
`, "enforcer:\n  static_max_addresses: 4294967297\n", []string{`testdata/t.yaml:12:25: enforcer.static_max_addresses: 4294967297 is more than 4294967296 (all of IPv4)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(staticConfigName, []byte(staticHead+tt.body+tt.tail))
			if err == nil {
				t.Fatal("no error")
			}
			es, ok := err.(Errors)
			if !ok {
				t.Fatalf("%T %v", err, err)
			}
			var got []string
			for _, e := range es {
				got = append(got, e.Error())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("errors\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}
