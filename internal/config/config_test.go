package config

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	if e.MinTTL != DefaultMinTTL || e.Grace != DefaultGrace || e.MaxTTL != DefaultMaxTTL || e.Hold != DefaultHold {
		t.Errorf("durations: %+v", e)
	}
	if got := c.Derived.Upstreams; len(got) != 1 || got[0] != netip.MustParseAddrPort("198.51.100.53:53") {
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
			want: []string{"t.yaml:4:1: field tabel not found in type config.Enforcer"},
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
				`t.yaml:2:13: upstreams[0]: "resolver.example" is not an IP address with a port`,
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
				`t.yaml:15:15: clients[0].rules[1].fqdn: required: at least one name pattern`,
				`t.yaml:18:13: clients[1].cidrs[0]: 2001:db8::/32 is already listed at clients[0].cidrs[2]`,
			},
		},
		{
			name: "missing required",
			file: "clients: []\n",
			want: []string{
				"t.yaml:1:1: mode: required: observe or enforce",
				"t.yaml:1:1: upstreams: required: at least one resolver address",
			},
		},
		{
			name: "output hook with client scope",
			file: "mode: observe\nupstreams: [198.51.100.53]\nenforcer:\n  hook: output\n  scope: client\n",
			want: []string{"t.yaml:5:10: enforcer.scope: scope client needs hook forward"},
		},
		{
			name: "unknown profile without catalog",
			file: "mode: observe\nupstreams: [198.51.100.53]\nclients:\n  - name: a\n    cidrs: [192.0.2.0/24]\n    profiles: [azure-sphere]\n",
			want: []string{`t.yaml:6:16: clients[0].profiles[0]: unknown profile "azure-sphere": no catalog is loaded`},
		},
		{
			name: "yaml syntax",
			file: "mode: enforce\n  upstreams: [\n",
			want: []string{"t.yaml:2:1: mapping values are not allowed in this context"},
		},
		{
			name: "wrong type",
			file: "mode: enforce\nupstreams: [198.51.100.53]\nenforcer:\n  min_ttl: soon\n",
			want: []string{"t.yaml:4:1: cannot unmarshal !!str `soon` into time.Duration"},
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
	for _, want := range []string{"mode:", "enforce", "client group sphere-devices: 192.0.2.0/26", "our-iot-hub", "contoso-hub.azure-devices.net", "tcp/8883 tcp/443"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("effective policy lacks %q:\n%s", want, b.String())
		}
	}
	if c.Enforcer.MinTTL != 5*time.Minute {
		t.Errorf("min_ttl %s", c.Enforcer.MinTTL)
	}
}

func TestNormalizeRegion(t *testing.T) {
	for in, want := range map[string]string{"East US 2": "eastus2", "westeurope": "westeurope", "West Central US": "westcentralus"} {
		if got := NormalizeRegion(in); got != want {
			t.Errorf("NormalizeRegion(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte("mode: enforce\nupstreams: [198.51.100.53]\nenforcer:\n  tabel: x\n"))
	f.Add([]byte("clients: [{name: a, cidrs: [::/0], rules: [{name: r, fqdn: ['*.a.b'], ports: [udp/1-2]}]}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
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
