package config

import (
	"bytes"
	"strings"
	"testing"
)

func TestAPISection(t *testing.T) {
	tests := []struct {
		name string
		file string
		// want is the error line, or "" for a valid file; effective a
		// part of the effective configuration.
		want, effective string
	}{
		{"loopback, nothing set", minimal, "", "http, no token (loopback only)"},
		{"loopback with token", minimal + "api:\n  token_file: /etc/fqdngate/token\n", "", "token /etc/fqdngate/token for POST"},
		{"remote with token and tls", minimal + "listen:\n  api: 192.0.2.1:9053\napi:\n  token_file: /etc/fqdngate/token\n  tls_cert: /etc/fqdngate/api.crt\n  tls_key: /etc/fqdngate/api.key\n",
			"", "https (/etc/fqdngate/api.crt), token /etc/fqdngate/token for every path"},
		{"remote without token", minimal + "listen:\n  api: 192.0.2.1:9053\n", "api.token_file: required: listen.api 192.0.2.1:9053 is not loopback", ""},
		{"remote v6 without token", minimal + "listen:\n  api: \"[2001:db8::1]:9053\"\n", "api.token_file: required", ""},
		{"all interfaces without token", minimal + "listen:\n  api: 0.0.0.0:9053\n", "api.token_file: required", ""},
		{"cert without key", minimal + "api:\n  tls_cert: /etc/fqdngate/api.crt\n", "api.tls_cert: tls_cert and tls_key go together", ""},
		{"relative token path", minimal + "api:\n  token_file: token\n", `t.yaml:11:15: api.token_file: "token" is not an absolute path`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("t.yaml", []byte(tc.file))
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := c.WriteEffective(&b); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(b.String(), "api security:") || !strings.Contains(b.String(), tc.effective) {
				t.Errorf("effective configuration lacks %q:\n%s", tc.effective, b.String())
			}
		})
	}
}
