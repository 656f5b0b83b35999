package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestUsageAndExitCodes(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{nil, exitUsage, "", "fqdnlab demo"},
		{[]string{"help"}, exitOK, "fqdnlab down", ""},
		{[]string{"frob"}, exitUsage, "", `unknown command "frob"`},
		{[]string{"demo", "--help"}, exitOK, "", "-duration"},
		{[]string{"demo", "--ttl", "1s"}, exitUsage, "", "--ttl 1s is outside 2s..10m"},
		{[]string{"demo", "--duration", "2h"}, exitUsage, "", "--duration 2h0m0s is outside 5s..1h"},
		{[]string{"up", "--duration", "5s"}, exitUsage, "", "flag provided but not defined: -duration"},
		{[]string{"demo", "extra"}, exitUsage, "", `unexpected argument "extra"`},
		{[]string{"demo", "--ha"}, exitUsage, "", "flag provided but not defined: -ha"},
		{[]string{"up", "--help"}, exitOK, "", "-ha"},
		{[]string{"help"}, exitOK, "--ha: two fqdngate gateways", ""},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(tc.args, &out, &errb); code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("stdout %q / stderr %q, want %q / %q", out.String(), errb.String(), tc.stdout, tc.stderr)
			}
		})
	}
}
