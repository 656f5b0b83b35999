package config

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fqdngate/fqdngate/internal/lab"
	"github.com/fqdngate/fqdngate/internal/upstream"
)

// TestUpstreamFields: upstream entries of both transports, the 0x20
// switch and the CA file, with their defaults, errors (file, line, field
// path) and effective-config lines.
func TestUpstreamFields(t *testing.T) {
	dir := t.TempDir()
	ca, err := lab.NewCA("config test CA")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	notPEM := filepath.Join(dir, "not.pem")
	for f, b := range map[string][]byte{caFile: ca.PEM(), notPEM: []byte("hello")} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const clients = "clients:\n  - name: a\n    cidrs: [192.0.2.0/24]\n"
	for _, tc := range []struct {
		name      string
		top       string
		upstreams []upstream.Spec
		random    bool
		errs      []string
		effective []string
	}{
		{
			name:      "defaults",
			top:       `upstreams: ["198.51.100.53"]`,
			upstreams: []upstream.Spec{{Addr: netip.MustParseAddrPort("198.51.100.53:53")}},
			random:    true,
			effective: []string{"198.51.100.53:53 (timeout 2s per attempt, 5s per query; 0x20 case randomization on)", "upstream CAs:  system roots"},
		},
		{
			name: "every form",
			top: `upstreams: ["198.51.100.53:5353", "[2001:db8::53]:53", "tls://198.51.100.54#dns.lab.example"]
upstream_case_randomization: false
upstream_ca_file: ` + caFile,
			upstreams: []upstream.Spec{
				{Addr: netip.MustParseAddrPort("198.51.100.53:5353")},
				{Addr: netip.MustParseAddrPort("[2001:db8::53]:53")},
				{Addr: netip.MustParseAddrPort("198.51.100.54:853"), TLS: true, ServerName: "dns.lab.example"},
			},
			effective: []string{"198.51.100.53:5353, [2001:db8::53]:53, tls://198.51.100.54:853#dns.lab.example", "case randomization off", "upstream CAs:  " + caFile},
		},
		{
			name: "bad entries",
			top:  `upstreams: ["tls://198.51.100.54", "198.51.100.53", "198.51.100.53:53", "tls://198.51.100.54:853#a.example", "tls://198.51.100.54#A.example."]`,
			errs: []string{
				`t.yaml:1:13: upstreams[0]: "tls://198.51.100.54": a tls:// upstream needs the name its certificate carries`,
				`t.yaml:1:53: upstreams[2]: 198.51.100.53:53 is listed twice`,
				`upstreams[4]: tls://198.51.100.54:853#a.example is listed twice`,
			},
		},
		{
			name: "CA file missing",
			top:  "upstreams: [\"tls://198.51.100.54#dns.lab.example\"]\nupstream_ca_file: " + filepath.Join(dir, "missing.pem"),
			errs: []string{"t.yaml:2:19: upstream_ca_file: read CA file"},
		},
		{
			name: "CA file not PEM",
			top:  "upstreams: [\"tls://198.51.100.54#dns.lab.example\"]\nupstream_ca_file: " + notPEM,
			errs: []string{"t.yaml:2:19: upstream_ca_file: " + notPEM + " holds no PEM certificate"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("t.yaml", []byte(tc.top+"\nmode: observe\n"+clients))
			if tc.errs != nil {
				if err == nil {
					t.Fatal("no error")
				}
				for _, e := range tc.errs {
					if !strings.Contains(err.Error(), e) {
						t.Errorf("missing %q in:\n%s", e, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.Derived.Upstreams, tc.upstreams) {
				t.Errorf("upstreams %v, want %v", c.Derived.Upstreams, tc.upstreams)
			}
			if c.UpstreamCaseRandomization != tc.random {
				t.Errorf("case randomization %v, want %v", c.UpstreamCaseRandomization, tc.random)
			}
			if (c.UpstreamCAFile != "") != (c.Derived.UpstreamRootCAs != nil) {
				t.Errorf("CA file %q, pool %v", c.UpstreamCAFile, c.Derived.UpstreamRootCAs)
			}
			var b bytes.Buffer
			if err := c.WriteEffective(&b); err != nil {
				t.Fatal(err)
			}
			for _, e := range tc.effective {
				if !strings.Contains(b.String(), e) {
					t.Errorf("effective config lacks %q:\n%s", e, b.String())
				}
			}
		})
	}
}
