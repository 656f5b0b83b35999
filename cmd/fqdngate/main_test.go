package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExitCodesAndMessages(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("mode: enforce\nupstreams: [resolver.example]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{nil, exitUsage, "", "Usage:"},
		{[]string{"help"}, exitOK, "fqdngate validate  --config FILE", ""},
		{[]string{"version"}, exitOK, "fqdngate ", ""},
		{[]string{"frobnicate"}, exitUsage, "", `unknown command "frobnicate"`},
		{[]string{"validate"}, exitUsage, "", "--config is required"},
		{[]string{"validate", "--help"}, exitOK, "", "Usage: fqdngate validate --config FILE"},
		{[]string{"run", "--bogus"}, exitUsage, "", "flag provided but not defined: -bogus"},
		{[]string{"validate", "--config", bad}, exitUsage, "", bad + `:2:13: upstreams[0]: "resolver.example" is not an IP address`},
		{[]string{"validate", "--config", filepath.Join(t.TempDir(), "absent.yaml")}, exitRuntime, "", "absent.yaml: no such file"},
		{[]string{"validate", "--config", "../../examples/gateway.yaml"}, exitOK, "client group sphere-devices: 192.0.2.0/26", ""},
		{[]string{"teardown", "extra"}, exitUsage, "", `unexpected argument "extra"`},
		{[]string{"catalog"}, exitUsage, "", "fqdngate catalog list"},
		{[]string{"check"}, exitUsage, "", "give at least one --profile or --host"},
		{[]string{"check", "--profile", "azure-iot-hub", "--dns", "127.0.0.1"}, exitUsage, "", `needs parameter "iot_hub"`},
		{[]string{"check", "--host", "example.com", "--dns", "127.0.0.1"}, exitUsage, "", `"example.com" is not HOST:PORT`},
		{[]string{"check", "--host", "a.example:443", "--parallel", "0"}, exitUsage, "", "--parallel is 1-64"},
		{[]string{"check", "--host", "a.example:443", "--dns", "resolver"}, exitUsage, "", `--dns "resolver" is not IP or IP:port`},
		{[]string{"check", "--profile", "azure-sphere", "--cloud", "china", "--dns", "127.0.0.1"}, exitUsage, "", `no endpoints for cloud "china"`},
		{[]string{"catalog", "--help"}, exitOK, "", "fqdngate catalog export NAME --format F"},
		{[]string{"catalog", "list"}, exitOK, "azure-stack-hci-recommended", ""},
		{[]string{"catalog", "lst"}, exitUsage, "", `unknown command "lst"`},
		{[]string{"catalog", "show"}, exitUsage, "", "a profile NAME is required"},
		{[]string{"catalog", "show", "azure-spere"}, exitUsage, "", `unknown profile "azure-spere" (did you mean "azure-sphere"?)`},
		{[]string{"catalog", "show", "azure-sphere", "--cloud", "mars"}, exitUsage, "", `--cloud "mars" is not one of public, usgov, china`},
		{[]string{"catalog", "show", "azure-arc-k8s", "--region", "East US 2"}, exitOK, "eastus2.dp.kubernetesconfiguration.azure.com", ""},
		{[]string{"catalog", "show", "azure-sphere", "--param", "hub"}, exitUsage, "", `"hub" is not NAME=VALUE`},
		{[]string{"catalog", "export", "azure-sphere"}, exitUsage, "", `--format "" is not one of yaml, json, csv, config`},
		{[]string{"catalog", "export", "azure-iot-hub", "--format", "config"}, exitUsage, "", `needs parameter "iot_hub"`},
		{[]string{"catalog", "export", "azure-iot-hub", "--format", "config", "--param", "iot_hub=contoso-hub"}, exitOK, `fqdn: ["contoso-hub.azure-devices.net"]`, ""},
		{[]string{"catalog", "export", "azure-sphere", "--format", "config", "--cloud", "china"}, exitUsage, "", `has no endpoints for cloud "china"`},
		{[]string{"catalog", "export", "azure-sphere-ntp", "--format", "csv"}, exitOK, "azure-sphere-ntp,azure-sphere-ntp,prod.time.sphere.azure.net,,udp/123", ""},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(tc.args, &out, &errb); code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), tc.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdout, out.String())
			}
			if !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, errb.String())
			}
		})
	}
}

// TestSystemdUnit keeps the packaged unit honest: the commands it runs
// exist with those flags, it has exactly the two capabilities fqdngate
// needs, and the hardening the README promises is there.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("../../packaging/fqdngate.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{
		"ExecStart=/usr/local/bin/fqdngate run --config /etc/fqdngate/fqdngate.yaml",
		"ExecReload=/bin/kill -HUP $MAINPID",
		"CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE\n",
		"AmbientCapabilities=CAP_NET_ADMIN CAP_NET_BIND_SERVICE\n",
		"ProtectSystem=strict", "StateDirectory=fqdngate", "NoNewPrivileges=yes", "RestrictAddressFamilies=AF_INET AF_INET6 AF_NETLINK AF_UNIX",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	// The flags the unit uses are the CLI's.
	var out, errb bytes.Buffer
	if code := run([]string{"run", "--config", "/nonexistent/fqdngate.yaml"}, &out, &errb); code != exitRuntime || !strings.Contains(errb.String(), "no such file") {
		t.Errorf("run --config: exit %d %s", code, errb.String())
	}
}
