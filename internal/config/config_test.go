package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/catalog"
	"github.com/fqdngate/fqdngate/internal/policy"
	"github.com/fqdngate/fqdngate/internal/upstream"
)

const minimal = `mode: enforce
upstreams: ["198.51.100.53"]
clients:
  - name: devices
    cidrs: ["192.0.2.0/24"]
    rules:
      - name: hub
        fqdn: ["contoso-hub.azure-devices.net"]
        ports: ["tcp/8883", "tcp/443"]
`

func TestDefaults(t *testing.T) {
	c, err := Parse("t.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	e := c.Enforcer
	if e.Backend != "nftables" || e.Table != "fqdngate" || e.Hook != "forward" || e.Scope != "client" {
		t.Errorf("enforcer defaults: %+v", e)
	}
	if e.MinTTL != DefaultMinTTL || e.Grace != DefaultGrace || e.MaxTTL != DefaultMaxTTL || e.Hold != DefaultHold || e.GCInterval != DefaultGCInterval {
		t.Errorf("durations: %+v", e)
	}
	if got := c.Derived.Upstreams; len(got) != 1 || got[0] != (upstream.Spec{Addr: netip.MustParseAddrPort("198.51.100.53:53")}) {
		t.Errorf("upstreams = %v, want port 53 filled in", got)
	}
	if c.DenyResponse != "nxdomain" || c.Listen.API != "127.0.0.1:9053" {
		t.Errorf("deny %q api %q", c.DenyResponse, c.Listen.API)
	}
	if !c.Derived.Policy.Match(netip.MustParseAddr("192.0.2.9"), "contoso-hub.azure-devices.net.").Allowed() {
		t.Error("rule not compiled into the policy")
	}
}

func TestExplicitZeroGraceKept(t *testing.T) {
	c, err := Parse("t.yaml", []byte(minimal+"enforcer:\n  grace: 0s\n  min_ttl: 0s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Enforcer.Grace != 0 || c.Enforcer.MinTTL != 0 {
		t.Errorf("grace %s min_ttl %s, want explicit zeros kept", c.Enforcer.Grace, c.Enforcer.MinTTL)
	}
}

func TestOutputHookDefaultsToGlobalScope(t *testing.T) {
	c, err := Parse("t.yaml", []byte(minimal+"enforcer:\n  hook: output\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Enforcer.Scope != "global" {
		t.Errorf("scope = %q", c.Enforcer.Scope)
	}
}

// Each case is a whole file and the exact error lines it must produce:
// file, line, column, field and message.
func TestErrorsNameFileLineAndField(t *testing.T) {
	tests := []struct {
		name string
		file string
		want []string
	}{
		{
			name: "unknown key",
			file: "mode: enforce\nupstreams: [198.51.100.53]\nenforcer:\n  tabel: x\n",
			want: []string{"t.yaml:1:1: clients: warning: no client groups: every query is refused", "t.yaml:4:3: enforcer.tabel: unknown key; did you mean table?"},
		},
		{
			name: "bad values everywhere",
			file: `mode: enforcing
upstreams: ["resolver.example", "198.51.100.53", "198.51.100.53:53"]
enforcer:
  hook: input
  min_ttl: 10m
  max_ttl: 1m
clients:
  - name: a
    cidrs: ["192.0.2.10/24", "not-a-cidr", "2001:db8::/32"]
    rules:
      - name: r
        fqdn: ["*.com", "ok.example.com"]
        ports: ["tcp/443", "tcp/0", "icmp/1"]
      - name: r
        fqdn: []
        ports: ["udp/123"]
  - name: b
    cidrs: ["2001:db8::/32"]
deny_response: drop
`,
			want: []string{
				`t.yaml:1:7: mode: "enforcing" is not one of observe, enforce`,
				`t.yaml:2:13: upstreams[0]: "resolver.example" is not an IP address (names are not accepted`,
				`t.yaml:2:50: upstreams[2]: 198.51.100.53:53 is listed twice`,
				`t.yaml:4:9: enforcer.hook: "input" is not one of forward, output`,
				`t.yaml:6:12: enforcer.max_ttl: 1m0s is below min_ttl 10m0s`,
				`t.yaml:19:16: deny_response: "drop" is not one of nxdomain, refused`,
				`t.yaml:9:13: clients[0].cidrs[0]: 192.0.2.10/24 has host bits set; did you mean 192.0.2.0/24?`,
				`t.yaml:9:30: clients[0].cidrs[1]: "not-a-cidr" is not a network in CIDR form`,
				`t.yaml:12:16: clients[0].rules[0].fqdn[0]: pattern "*.com": too broad`,
				`t.yaml:13:28: clients[0].rules[0].ports[1]: port "tcp/0": "0" is not a port number from 1 to 65535`,
				`t.yaml:13:37: clients[0].rules[0].ports[2]: port "icmp/1": protocol "icmp" is not tcp or udp`,
				`t.yaml:14:15: clients[0].rules[1].name: "r" is already the name of rules[0] in this group`,
				`t.yaml:15:15: clients[0].rules[1].fqdn: required: at least one name pattern (or static)`,
				`t.yaml:18:13: clients[1].cidrs[0]: 2001:db8::/32 is already listed at clients[0].cidrs[2]`,
			},
		},
		{
			name: "missing required",
			file: "clients: []\n",
			want: []string{
				"t.yaml:1:1: mode: required: observe or enforce",
				"t.yaml:1:1: upstreams: required: at least one resolver address",
				"t.yaml:1:10: clients: warning: no client groups",
			},
		},
		{
			name: "gc interval out of range",
			file: "mode: observe\nupstreams: [198.51.100.53]\nenforcer:\n  gc_interval: 500ms\n",
			want: []string{"t.yaml:1:1: clients: warning: no client groups: every query is refused", "t.yaml:4:16: enforcer.gc_interval: 500ms is outside 1s..1h"},
		},
		{
			name: "output hook with client scope",
			file: "mode: observe\nupstreams: [198.51.100.53]\nenforcer:\n  hook: output\n  scope: client\n",
			want: []string{"t.yaml:1:1: clients: warning: no client groups: every query is refused", "t.yaml:5:10: enforcer.scope: scope client needs hook forward"},
		},
		{
			name: "catalog profiles and params",
			file: `mode: observe
upstreams: [198.51.100.53]
cloud: usgov
params:
  region: westus
  iot_hub: "-bad-"
  hub: x
clients:
  - name: a
    cidrs: [192.0.2.0/24]
    profiles: [azure-spere, azure-iot-hub, azure-sphere, azure-arc-k8s]
  - name: b
    cidrs: [198.51.100.0/24]
    params: {iot_hub: contoso-hub}
    profiles: [azure-iot-hub]
`,
			want: []string{
				`t.yaml:5:11: params.region: the region is set with the top-level region: key`,
				`t.yaml:7:8: params.hub: unknown parameter "hub"; the catalog knows region, iot_hub, witness_storage_account, scvmm_server, vcenter_server`,
				`t.yaml:6:12: params.iot_hub: parameter iot_hub: "-bad-" is not a single DNS label`,
				`t.yaml:11:16: clients[0].profiles[0]: unknown profile "azure-spere" (did you mean "azure-sphere"?)`,
				`t.yaml:11:29: clients[0].profiles[1]: profile "azure-iot-hub" needs parameter "iot_hub" for <iot_hub>.azure-devices.us: set params.iot_hub`,
				`t.yaml:11:44: clients[0].profiles[2]: profile "azure-sphere" has no endpoints for cloud "usgov", only for public`,
				`t.yaml:11:58: clients[0].profiles[3]: profile "azure-arc-k8s" has no endpoints for cloud "usgov", only for public`,
			},
		},
		{
			name: "region placeholder without region",
			file: "mode: observe\nupstreams: [198.51.100.53]\nclients:\n  - name: a\n    cidrs: [192.0.2.0/24]\n    profiles: [azure-arc-servers]\n",
			want: []string{`t.yaml:6:16: clients[0].profiles[0]: profile "azure-arc-servers" needs parameter "region" for telemetry.<region>.arcdataservices.com: set region: (the Azure region`},
		},
		{
			name: "yaml syntax",
			file: "mode: enforce\n  upstreams: [\n",
			want: []string{"t.yaml:2:12: mode: YAML syntax: mapping values are not allowed in this context"},
		},
		{
			name: "wrong type",
			file: "mode: enforce\nupstreams: [198.51.100.53]\nenforcer:\n  min_ttl: soon\n",
			want: []string{"t.yaml:1:1: clients: warning: no client groups: every query is refused", `t.yaml:4:12: enforcer.min_ttl: expected a duration such as 5m, 30s or 1h30m, got "soon"`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.file))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			got := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in:\n%s", w, got)
				}
			}
			if n := strings.Count(got, "\n") + 1; n != len(tc.want) {
				t.Errorf("got %d error lines, want %d:\n%s", n, len(tc.want), got)
			}
		})
	}
}

func TestLoadFileErrors(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.yaml"))
	if err == nil || errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "absent.yaml") {
		t.Fatalf("missing file: %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, bytes.Repeat([]byte("#\n"), maxFileSize), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("big file: %v", err)
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	c, err := Load("../../examples/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := c.WriteEffective(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"mode:", "enforce", "client group sphere-devices: 192.0.2.0/26", "catalog azure-iot-hub, seed 001 line 22", "contoso-hub.azure-devices.net", "tcp/8883 tcp/5671 tcp/443", "vendor-telemetry", "client group arc-servers"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("effective policy lacks %q:\n%s", want, b.String())
		}
	}
	if c.Enforcer.MinTTL != 5*time.Minute {
		t.Errorf("min_ttl %s", c.Enforcer.MinTTL)
	}
}

func TestProfiles(t *testing.T) {
	c, err := Parse("t.yaml", []byte(`mode: enforce
upstreams: [198.51.100.53]
region: East US 2
params: {iot_hub: fleet-hub}
clients:
  - name: sphere
    cidrs: [192.0.2.0/26]
    profiles: [azure-sphere, azure-iot-hub]
  - name: lab
    cidrs: [192.0.2.64/26]
    params: {iot_hub: lab-hub}
    profiles: [azure-iot-hub, azure-arc-servers-sql]
`))
	if err != nil {
		t.Fatal(err)
	}
	pol := c.Derived.Policy
	tests := []struct {
		client, name string
		allowed      bool
		source       string
	}{
		{"192.0.2.10", "prod.core.sphere.azure.net", true, "catalog azure-sphere, seed 001 line 15"},
		{"192.0.2.10", "fleet-hub.azure-devices.net", true, "catalog azure-iot-hub, seed 001 line 22"},
		{"192.0.2.10", "lab-hub.azure-devices.net", false, ""},
		{"192.0.2.70", "lab-hub.azure-devices.net", true, "catalog azure-iot-hub, seed 001 line 22"},
		{"192.0.2.70", "fleet-hub.azure-devices.net", false, ""},
		{"192.0.2.70", "san-af-eastus2-prod.azurewebsites.net", true, "catalog azure-arc-servers-sql, seed 002 line 137"},
		{"192.0.2.70", "prod.core.sphere.azure.net", false, ""},
	}
	for _, tc := range tests {
		d := pol.Match(netip.MustParseAddr(tc.client), tc.name)
		if d.Allowed() != tc.allowed {
			t.Errorf("%s asking %s: allowed %v, want %v", tc.client, tc.name, d.Allowed(), tc.allowed)
			continue
		}
		if tc.allowed && d.Rules[0].Source != tc.source {
			t.Errorf("%s: source %q, want %q", tc.name, d.Rules[0].Source, tc.source)
		}
	}
	var b bytes.Buffer
	if err := c.WriteEffective(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"catalog azure-iot-hub, seed 001 line 22           lab-hub.azure-devices.net              tcp/8883 tcp/5671 tcp/443",
		"region:        eastus2",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("effective policy lacks %q:\n%s", want, b.String())
		}
	}
}

// TestCatalogExportIsConfig pastes `catalog export --format config` of
// every profile into a client group and checks that the group then allows
// exactly what `profiles:` would.
func TestCatalogExportIsConfig(t *testing.T) {
	cat, err := catalog.Default()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]string{"region": "eastus2", "iot_hub": "hub1", "witness_storage_account": "w1",
		"scvmm_server": "scvmm.corp.example", "vcenter_server": "vc.corp.example"}
	for _, p := range cat.Profiles() {
		for _, cloud := range cat.Clouds(p.Name) {
			var snippet bytes.Buffer
			if err := cat.Export(&snippet, p.Name, catalog.FormatConfig, cloud, values); err != nil {
				t.Fatalf("%s/%s: %v", p.Name, cloud, err)
			}
			file := "mode: enforce\nupstreams: [198.51.100.53]\nclients:\n  - name: g\n    cidrs: [192.0.2.0/24]\n" +
				indent(snippet.String(), "    ")
			c, err := Parse("export.yaml", []byte(file))
			if err != nil {
				t.Fatalf("%s/%s: export does not load: %v\n%s", p.Name, cloud, err, file)
			}
			want, _ := cat.ProfileRules(p.Name, cloud, values)
			if got, w := ruleSet(c.Derived.Policy.Groups()[0].Rules), ruleSet(want); got != w {
				t.Errorf("%s/%s: export allows\n%s\nprofile allows\n%s", p.Name, cloud, got, w)
			}
		}
	}
}

func indent(s, pre string) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	for i := range lines {
		lines[i] = pre + lines[i]
	}
	return strings.Join(lines, "\n") + "\n"
}

// ruleSet renders rules as sorted "pattern ports" lines.
func ruleSet(rules []*policy.Rule) string {
	var out []string
	for _, r := range rules {
		for _, p := range r.Patterns {
			out = append(out, fmt.Sprintf("%s %v", p, r.Ports))
		}
	}
	slices.Sort(out)
	return strings.Join(slices.Compact(out), "\n")
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte("mode: enforce\nupstreams: [198.51.100.53]\nenforcer:\n  tabel: x\n"))
	f.Add([]byte("clients: [{name: a, cidrs: [::/0], rules: [{name: r, fqdn: ['*.a.b'], ports: [udp/1-2]}]}]"))
	// The validate corpus is in testdata/fuzz/FuzzParse too, as seeds.
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			var es Errors
			if errors.As(err, &es) {
				for i, e := range es {
					if e.Line < 1 || e.Column < 1 {
						t.Fatalf("error without a position: %v", e)
					}
					if i > 0 && (e.Line < es[i-1].Line || e.Line == es[i-1].Line && e.Column < es[i-1].Column) {
						t.Fatalf("errors not in file order:\n%v", es)
					}
				}
			}
			return
		}
		if c.Derived.Policy == nil || len(c.Derived.Upstreams) == 0 {
			t.Fatalf("valid config without policy or upstreams")
		}
		var b bytes.Buffer
		if err := c.WriteEffective(&b); err != nil {
			t.Fatal(err)
		}
	})
}
