package config

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestVerify(t *testing.T) {
	rules := `clients:
  - name: devices
    cidrs: ["192.0.2.0/24"]
    rules:
      - name: hub
        fqdn: ["contoso-hub.azure-devices.net"]
        ports: ["tcp/8883", "tcp/9443"]
        tls_ports: [9443]
      - name: camera
        fqdn: ["cam.example.com"]
        ports: ["tcp/443"]
        verify: false
`
	tests := []struct {
		name, file string
		mode       string
		err        string
		effective  string
	}{
		{"default off", "", "off", "", `verify:\s+off\n`},
		{"observe", "enforcer:\n  verify: observe\n", "observe", "", `not verified: devices/camera; more ports: devices/hub \[9443\]`},
		{"enforce", "enforcer:\n  verify: enforce\n", "enforce", "", `verify:\s+enforce: .*udp/443 \(QUIC\) dropped in enforce`},
		{"bad mode", "enforcer:\n  verify: on\n", "", `enforcer.verify: "on" is not one of off, observe, enforce`, ""},
		{"bad port", "enforcer:\n  verify: enforce\n" + strings.Replace(rules, "[9443]", "[9443, 70000]", 1), "", "clients[0].rules[0].tls_ports[1]: 70000 is not a TCP port (1..65535)", ""},
		{"mark with verify's bits", "enforcer:\n  verify: observe\n  mark: 0x1000053\n", "", "enforcer.mark: 0x1000053 uses bits 0x03000000, which verify owns", ""},
		{"mark with those bits, verify off", "enforcer:\n  mark: 0x1000053\n", "off", "", `verify:\s+off\n`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := "mode: enforce\nupstreams: [\"198.51.100.53\"]\n" + tt.file
			if !strings.Contains(tt.file, "clients:") {
				file += rules
			}
			c, err := Parse("t.yaml", []byte(file))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Enforcer.Verify != tt.mode {
				t.Errorf("verify %q, want %q", c.Enforcer.Verify, tt.mode)
			}
			var b strings.Builder
			c.WriteEffective(&b)
			if !regexp.MustCompile(tt.effective).MatchString(b.String()) {
				t.Errorf("effective config has no %q:\n%s", tt.effective, b.String())
			}
			hub, cam := c.Clients[0].Rules[0], c.Clients[0].Rules[1]
			if got := VerifyPorts(hub); !slices.Equal(got, []uint16{443, 5671, 8443, 8883, 80, 9443}) {
				t.Errorf("hub ports %v", got)
			}
			if got := VerifyPorts(cam); got != nil {
				t.Errorf("camera ports %v, want none", got)
			}
		})
	}
}
