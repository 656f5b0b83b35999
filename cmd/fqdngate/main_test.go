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
