package config

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestAnswerSettings(t *testing.T) {
	const head = "mode: enforce\nupstreams: [198.51.100.53]\n"
	rule := func(extra string) string {
		return head + `clients:
  - name: devices
    cidrs: ["192.0.2.0/24"]
    rules:
      - name: r
        fqdn: ["*.app.example.com"]
        ports: ["tcp/443"]
` + extra
	}
	tests := []struct {
		name string
		file string
		want string // the error, empty when valid
	}{
		{name: "defaults", file: rule("")},
		{name: "allow and strict via", file: rule("        private_answers: allow\n        cname_targets: strict\n        via: [\"*.edge.example\"]\n")},
		{name: "serve_stale", file: rule("serve_stale: 1h\n")},
		{name: "private_answers bad value", file: rule("        private_answers: yes\n"),
			want: `t.yaml:10:26: clients[0].rules[0].private_answers: "yes" is not one of withhold, allow`},
		{name: "cname_targets bad value", file: rule("        cname_targets: pinned\n"),
			want: `t.yaml:10:24: clients[0].rules[0].cname_targets: "pinned" is not one of any, strict`},
		{name: "strict without via", file: rule("        cname_targets: strict\n"),
			want: `t.yaml:7:9: clients[0].rules[0].via: required with cname_targets: strict`},
		{name: "via without strict", file: rule("        via: [\"*.edge.example\"]\n"),
			want: `t.yaml:10:14: clients[0].rules[0].via: has no effect without cname_targets: strict`},
		{name: "bad via pattern", file: rule("        cname_targets: strict\n        via: [\"*.example\", \"ok.edge.example\"]\n"),
			want: `t.yaml:11:15: clients[0].rules[0].via[0]: pattern "*.example": too broad`},
		{name: "serve_stale too long", file: rule("serve_stale: 200h\n"),
			want: `t.yaml:10:14: serve_stale: 200h0m0s is outside 0..168h0m0s`},
		{name: "serve_stale negative", file: rule("serve_stale: -1s\n"),
			want: `t.yaml:10:14: serve_stale: -1s is outside 0..168h0m0s`},
		{name: "serve_stale without the cache", file: rule("serve_stale: 1h\ncache_size: 0\n"),
			want: `t.yaml:10:14: serve_stale: needs the answer cache: cache_size is 0`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.file))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("no error, want %q", tc.want)
			case tc.want != "" && !strings.HasPrefix(err.Error(), tc.want):
				t.Fatalf("error %q, want %q", err, tc.want)
			}
		})
	}
}

func TestAnswerSettingsReachPolicy(t *testing.T) {
	c, err := Parse("t.yaml", []byte(`mode: enforce
upstreams: [198.51.100.53]
serve_stale: 90m
clients:
  - name: devices
    cidrs: ["192.0.2.0/24"]
    profiles: [azure-sphere]
    rules:
      - name: privlink
        fqdn: ["*.privatelink.example.com"]
        ports: ["tcp/443"]
        private_answers: allow
      - name: pinned
        fqdn: ["*.app.example.com"]
        ports: ["tcp/443"]
        cname_targets: strict
        via: ["*.Edge.Example."]
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.ServeStale != 90*time.Minute {
		t.Errorf("serve_stale %s", c.ServeStale)
	}
	pol, dev := c.Derived.Policy, netip.MustParseAddr("192.0.2.9")
	if d := pol.Match(dev, "x.privatelink.example.com."); !d.AllowsPrivate() {
		t.Error("private_answers: allow did not reach the rule")
	}
	d := pol.Match(dev, "a.app.example.com.")
	if d.AllowsPrivate() || !d.Rules[0].Answers.CNAMEStrict {
		t.Errorf("pinned rule: %+v", d.Rules[0].Answers)
	}
	if n, _ := d.ForChain([]string{"x.edge.example."}); !n.Allowed() {
		t.Error("via pattern not compiled into the rule")
	}
	if n, refused := d.ForChain([]string{"x.other.example."}); n.Allowed() || refused != "x.other.example." {
		t.Error("chain outside via granted")
	}
	// Catalog rules keep the defaults.
	if d := pol.Match(dev, "prod.core.sphere.azure.net."); !d.Allowed() || d.AllowsPrivate() || d.Rules[0].Answers.CNAMEStrict {
		t.Errorf("catalog rule answers: %+v", d)
	}
	var b bytes.Buffer
	if err := c.WriteEffective(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"serve stale:   up to 1h30m0s past expiry when no upstream answers, with TTL 30s",
		"answers:       private addresses withheld, any CNAME target",
		"rule privlink answers: private addresses allowed, any CNAME target",
		"rule pinned answers: private addresses withheld, CNAME targets only via *.edge.example",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("effective config lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "rule azure-sphere answers") {
		t.Errorf("rules with the defaults listed:\n%s", b.String())
	}
}
