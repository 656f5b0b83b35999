package config

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/fqdngate/fqdngate/internal/catalog"
)

func TestSuffixWildcards(t *testing.T) {
	tests := []struct {
		pattern string
		want    string // "error", "warning" or ""
	}{
		{"*.co.uk", "error"},                   // ICANN section
		{"*.com.au", "error"},                  // ICANN section
		{"shop*.co.uk", "error"},               // a label wildcard there too
		{"*.foo.ck", "error"},                  // the list's wildcard rule *.ck
		{"*.blob.core.windows.net", "warning"}, // private section
		{"*.azurewebsites.net", "warning"},     // private section
		{"*.github.io", "warning"},             // private section
		{"contoso*.blob.core.windows.net", "warning"},
		{"*.contoso.blob.core.windows.net", ""}, // below one account's name
		{"contoso.blob.core.windows.net", ""},   // exact
		{"*.azure-devices.net", ""},             // one registrant's domain
		{"*.example.com", ""},
		{"*.vendor.co.uk", ""},
		{"*.corp.internal", ""}, // not on the list: its default rule is the last label
	}
	for _, tc := range tests {
		t.Run(tc.pattern, func(t *testing.T) {
			file := fmt.Sprintf(`mode: enforce
upstreams: ["198.51.100.53"]
clients:
  - name: devices
    cidrs: ["192.0.2.0/24"]
    rules:
      - name: r
        fqdn: [%q]
        ports: ["tcp/443"]
`, tc.pattern)
			c, err := Parse("t.yaml", []byte(file))
			got := ""
			switch {
			case err != nil:
				got = "error"
				if !strings.Contains(err.Error(), "t.yaml:8:16: clients[0].rules[0].fqdn[0]: ") || !strings.Contains(err.Error(), "is a public suffix (ICANN section") {
					t.Errorf("error: %v", err)
				}
			case len(c.Derived.Warnings) > 0:
				got = "warning"
				w := c.Derived.Warnings[0].Error()
				if len(c.Derived.Warnings) != 1 || !strings.Contains(w, "t.yaml:8:16: clients[0].rules[0].fqdn[0]: warning: ") || !strings.Contains(w, "opens any of the names anyone can register under ") {
					t.Errorf("warnings: %v", c.Derived.Warnings)
				}
			}
			if got != tc.want {
				t.Errorf("%s: %q, want %q (%v)", tc.pattern, got, tc.want, err)
			}
		})
	}
}

// TestUnknownKeySuggestions: each section suggests from its own keys.
func TestUnknownKeySuggestions(t *testing.T) {
	const head = "mode: enforce\nupstreams: [\"198.51.100.53\"]\n"
	group := "clients:\n  - name: g\n    cidrs: [\"192.0.2.0/24\"]\n"
	tests := []struct {
		yaml, want string
	}{
		{head + group + "Mode: observe\n", "t.yaml:6:1: Mode: unknown key; did you mean mode?"},
		{head + group + "cache: 10\n", "t.yaml:6:1: cache: unknown key; did you mean cache_size?"},
		{head + group + "state_directory: /x\n", "t.yaml:6:1: state_directory: unknown key; did you mean state_dir?"},
		{head + "listen:\n  dsn: [\"192.0.2.1:53\"]\n" + group, "t.yaml:4:3: listen.dsn: unknown key; did you mean dns?"},
		{head + "enforcer:\n  max_entries_per: 9\n" + group, "t.yaml:4:3: enforcer.max_entries_per: unknown key; did you mean max_entries_per_client?"},
		{head + group + "    max_qsp: 5\n", "t.yaml:6:5: clients[0].max_qsp: unknown key; did you mean max_qps?"},
		{head + group + "    rules: [{name: r, fqdn: [a.example.com], ports: [tcp/443], privat_answers: allow}]\n", "t.yaml:6:64: clients[0].rules[0].privat_answers: unknown key; did you mean private_answers?"},
		{head + group + "api: {token: /t}\n", "t.yaml:6:7: api.token: unknown key; did you mean token_file?"},
		{head + group + "feeds: {push: [{type: panos, url: \"https://fw.example\", keyfile: /k}]}\n", "t.yaml:6:57: feeds.push[0].keyfile: unknown key; did you mean key_file?"},
		{head + group + "log: {colour: true}\n", "t.yaml:6:7: log.colour: unknown key; log takes format, level"},
		{head + group + "params: {iot_hbu: hub1}\n", `t.yaml:6:19: params.iot_hbu: unknown parameter "iot_hbu"; did you mean iot_hub?`},
	}
	for _, tc := range tests {
		_, err := Parse("t.yaml", []byte(tc.yaml))
		if err == nil || err.Error() != tc.want {
			t.Errorf("got %v\nwant %s", err, tc.want)
		}
	}
}

func TestSyntaxPositions(t *testing.T) {
	tests := []struct {
		yaml, want string
	}{
		// yaml.v3 counts its parser's lines from 0: "line 1" here.
		{"mode: enforce\nupstreams: [1, 2\ncloud: public\n", "t.yaml:2:12: upstreams: YAML syntax: did not find expected ',' or ']'"},
		// No line at all from yaml.v3 (line 0 counted from 0).
		{"upstreams: [1, 2]]\n", "t.yaml:1:18: upstreams: YAML syntax: did not find expected key"},
		// Reported at the end of the file: found where it was opened.
		{"mode: enforce\nupstreams: [\n\n\n", "t.yaml:2:12: upstreams: YAML syntax: did not find expected node content"},
		{"mode: 'enforce\ncloud: public\n", "t.yaml:1:7: mode: YAML syntax: found unexpected end of stream"},
		{"enforcer: {table: x\n", "t.yaml:1:11: enforcer: YAML syntax: did not find expected ',' or '}'"},
		{"mode: enforce\nupstreams: [x] y\n", "t.yaml:2:16: upstreams: YAML syntax: did not find expected key"},
	}
	for _, tc := range tests {
		_, err := Parse("t.yaml", []byte(tc.yaml))
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q:\ngot  %v\nwant %s", tc.yaml, err, tc.want)
		}
	}
}

func TestStrict(t *testing.T) {
	if _, err := Parse("t.yaml", []byte(minimal), WithStrict(true)); err != nil {
		t.Fatalf("a file without warnings fails in strict mode: %v", err)
	}
	open := strings.Replace(minimal, "192.0.2.0/24", "0.0.0.0/0", 1)
	c, err := Parse("t.yaml", []byte(open), WithStrict(false))
	if err != nil || len(c.Derived.Warnings) != 1 {
		t.Fatalf("not strict: %v, warnings %v", err, c.Derived.Warnings)
	}
	var b bytes.Buffer
	if err := c.WriteEffective(&b); err != nil {
		t.Fatal(err)
	}
	if want := "\nwarnings (1; --strict makes them errors):\n  t.yaml:5:13: clients[0].cidrs[0]: warning: 0.0.0.0/0 is every IPv4 address"; !strings.Contains(b.String(), want) {
		t.Errorf("effective configuration lacks %q:\n%s", want, b.String())
	}
	_, err = Parse("t.yaml", []byte(open), WithStrict(true))
	if !errors.Is(err, ErrStrict) || !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "t.yaml:5:13: clients[0].cidrs[0]: warning (strict): 0.0.0.0/0") {
		t.Fatalf("strict: %v", err)
	}
	// A real error is not ErrStrict, and the warnings come along, in order.
	_, err = Parse("t.yaml", []byte(strings.Replace(open, "mode: enforce", "mode: enforcing", 1)))
	if errors.Is(err, ErrStrict) || strings.Count(err.Error(), "\n") != 1 || !strings.Contains(err.Error(), "\nt.yaml:5:13: clients[0].cidrs[0]: warning: ") {
		t.Fatalf("error and warning: %v", err)
	}
}

// TestEffectivePrintsEverything: validate's printout has every setting.
func TestEffectivePrintsEverything(t *testing.T) {
	c, err := Parse("t.yaml", []byte(minimal+`cache_size: 5000
max_inflight: 77
state_dir: /srv/fqdngate
log: {format: json, level: debug}
params: {iot_hub: contoso-hub}
enforcer: {nflog_group: 7, mark: 0x42}
`))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := c.WriteEffective(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"cache:         up to 5000 answers",
		"in flight:     at most 77 queries at once (max_inflight)",
		"state:         /srv/fqdngate/ledger.db",
		"log:           json, level debug",
		"kernel:        drops logged to nflog group 7; fqdngate's own upstream traffic marked 0x42",
		"params:        iot_hub=contoso-hub",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
	c, err = Parse("t.yaml", []byte(minimal+"cache_size: 0\nstate_dir: \"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	b.Reset()
	_ = c.WriteEffective(&b)
	for _, want := range []string{"cache:         off (cache_size 0)", `state:         none (state_dir "")`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
}

// TestCatalogWildcardsWarnOnce puts every profile of the built-in catalog
// into one group, cloud by cloud: none may have a wildcard on an ICANN
// public suffix (an error nobody could fix), and each wildcard on a
// private one is one warning, however many profiles bring it.
func TestCatalogWildcardsWarnOnce(t *testing.T) {
	cat, err := catalog.Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, cloud := range catalog.Clouds {
		var names []string
		for _, p := range cat.Profiles() {
			if slices.Contains(cat.Clouds(p.Name), cloud) {
				names = append(names, p.Name)
			}
		}
		file := fmt.Sprintf("mode: enforce\nupstreams: [198.51.100.53]\ncloud: %s\nregion: eastus2\nparams: {iot_hub: hub1, scvmm_server: scvmm.corp.example, vcenter_server: vc.corp.example}\nclients:\n  - name: g\n    cidrs: [192.0.2.0/24]\n    profiles: [%s]\n",
			cloud, strings.Join(names, ", "))
		c, err := Parse("t.yaml", []byte(file))
		if err != nil {
			t.Fatalf("%s: %v", cloud, err)
		}
		seen := map[string]bool{}
		for _, w := range c.Derived.Warnings {
			pat, _, _ := strings.Cut(w.Msg, " ")
			if seen[pat] {
				t.Errorf("%s: %s warned twice", cloud, pat)
			}
			seen[pat] = true
		}
		if cloud == catalog.CloudPublic && (!seen["*.blob.core.windows.net"] || !seen["*.servicebus.windows.net"]) {
			t.Errorf("%s: warnings %v", cloud, c.Derived.Warnings)
		}
	}
}
