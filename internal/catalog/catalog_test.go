package catalog

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/fqdngate/fqdngate/internal/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func mustDefault(t testing.TB) *Catalog {
	t.Helper()
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestEveryProfileResolves resolves every profile in every cloud it claims,
// with every parameter set, and checks each endpoint is a valid pattern
// with ports: the catalog cannot hold a profile a config could not use.
func TestEveryProfileResolves(t *testing.T) {
	c := mustDefault(t)
	values := map[string]string{
		"region": "West Europe", "iot_hub": "hub1", "witness_storage_account": "witness1",
		"scvmm_server": "scvmm.corp.example", "vcenter_server": "vcenter.corp.example",
	}
	if len(c.Profiles()) < 15 {
		t.Fatalf("only %d profiles", len(c.Profiles()))
	}
	for _, p := range c.Profiles() {
		clouds := c.Clouds(p.Name)
		if len(clouds) == 0 {
			t.Errorf("%s: no cloud", p.Name)
		}
		for _, cl := range clouds {
			eps, err := c.Resolve(p.Name, cl, values)
			if err != nil {
				t.Errorf("%s/%s: %v", p.Name, cl, err)
				continue
			}
			for _, ep := range eps {
				if strings.ContainsAny(ep.Pattern.Text, "<>") || len(ep.Ports) == 0 {
					t.Errorf("%s/%s: bad endpoint %+v", p.Name, cl, ep)
				}
			}
			rules, err := c.ProfileRules(p.Name, cl, values)
			if err != nil || len(rules) == 0 {
				t.Errorf("%s/%s: rules %v, %v", p.Name, cl, rules, err)
			}
		}
	}
}

func TestResolve(t *testing.T) {
	c := mustDefault(t)
	tests := []struct {
		name, profile, cloud string
		values               map[string]string
		want                 []string // hosts that must be there
		absent               []string
		err                  string
	}{
		{
			name: "region with spaces", profile: "azure-arc-k8s", cloud: "public",
			values: map[string]string{"region": "East US 2"},
			want:   []string{"eastus2.dp.kubernetesconfiguration.azure.com", "eastus2.login.microsoft.com", "eastus2.obo.arc.azure.com"},
		},
		{
			name: "region already normalised", profile: "azure-arc-servers-sql", cloud: "public",
			values: map[string]string{"region": "westeurope"},
			want:   []string{"san-af-westeurope-prod.azurewebsites.net"},
		},
		{
			name: "missing region", profile: "azure-arc-k8s", cloud: "public",
			err: `profile "azure-arc-k8s" needs parameter "region" for <region>.dp.kubernetesconfiguration.azure.com: set region:`,
		},
		{
			name: "missing region through an include", profile: "azure-arc-data", cloud: "public",
			err: `profile "azure-arc-data" needs parameter "region" for <region>.dp.kubernetesconfiguration.azure.com`,
		},
		{
			name: "missing hub", profile: "azure-iot-hub", cloud: "china",
			err: `profile "azure-iot-hub" needs parameter "iot_hub" for <iot_hub>.azure-devices.cn: set params.iot_hub (the IoT hub's name`,
		},
		{
			name: "hub per cloud", profile: "azure-iot-hub", cloud: "usgov",
			values: map[string]string{"iot_hub": "Contoso-Hub"},
			want:   []string{"contoso-hub.azure-devices.us"},
			absent: []string{"contoso-hub.azure-devices.net", "contoso-hub.azure-devices.cn"},
		},
		{
			name: "bad hub", profile: "azure-iot-hub", cloud: "public",
			values: map[string]string{"iot_hub": "a.b"},
			err:    `parameter iot_hub: "a.b" is not a single DNS label`,
		},
		{
			name: "witness stays a wildcard without its account", profile: "azure-stack-hci-witness", cloud: "china",
			want: []string{"*.blob.core.windows.net"},
		},
		{
			name: "witness narrowed", profile: "azure-stack-hci-recommended", cloud: "public",
			values: map[string]string{"witness_storage_account": "contosowitness"},
			want:   []string{"contosowitness.blob.core.windows.net", "login.microsoftonline.com", "*.windowsupdate.com", "edgesupprd.trafficmanager.net"},
			absent: []string{"login.microsoftonline.us"},
		},
		{
			name: "hci per cloud", profile: "azure-stack-hci", cloud: "usgov",
			want:   []string{"login.microsoftonline.us", "graph.windows.net", "management.usgovcloudapi.net", "dp.azurestackchi.azure.us"},
			absent: []string{"management.azure.com", "login.chinacloudapi.cn"},
		},
		{
			name: "no endpoints in cloud", profile: "azure-sphere", cloud: "china",
			err: `profile "azure-sphere" has no endpoints for cloud "china", only for public`,
		},
		{
			name: "server host parameter", profile: "azure-arc-vmware", cloud: "public",
			values: map[string]string{"vcenter_server": "VCenter.Corp.Example"},
			want:   []string{"vcenter.corp.example", "msk8s.api.cdp.microsoft.com"},
		},
		{
			name: "unknown profile", profile: "azure-sphere-ntp2", cloud: "public",
			err: `unknown profile "azure-sphere-ntp2" (did you mean "azure-sphere-ntp"?)`,
		},
		{
			name: "unknown profile far from all", profile: "zzz", cloud: "public",
			err: `unknown profile "zzz"; 'fqdngate catalog list' shows them`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			eps, err := c.Resolve(tc.profile, tc.cloud, tc.values)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := make(map[string]bool)
			for _, ep := range eps {
				got[ep.Pattern.Text] = true
			}
			for _, w := range tc.want {
				if !got[w] {
					t.Errorf("%s missing; have %v", w, got)
				}
			}
			for _, a := range tc.absent {
				if got[a] {
					t.Errorf("%s should not be there", a)
				}
			}
		})
	}
}

func TestMissingParamErrorType(t *testing.T) {
	_, err := mustDefault(t).Resolve("azure-arc-scvmm", "public", nil)
	var mp *MissingParamError
	if !errors.As(err, &mp) || mp.Param.Name != "scvmm_server" || mp.Profile != "azure-arc-scvmm" {
		t.Fatalf("got %v", err)
	}
}

func TestIncludesAndSources(t *testing.T) {
	c := mustDefault(t)
	rules, err := c.ProfileRules("azure-arc-data", "public", map[string]string{"region": "eastus"})
	if err != nil {
		t.Fatal(err)
	}
	var k8s, own *policy.Rule
	for _, r := range rules {
		for _, p := range r.Patterns {
			switch p.Text {
			case "eastus.dp.kubernetesconfiguration.azure.com":
				k8s = r
			case "arcdataservicesrow1.azurecr.io":
				own = r
			}
		}
	}
	if k8s == nil || k8s.Name != "azure-arc-k8s" || k8s.Source != "catalog azure-arc-data > azure-arc-k8s, seed 002 line 23" {
		t.Errorf("included rule: %+v", k8s)
	}
	if own == nil || own.Name != "azure-arc-data" || own.Source != "catalog azure-arc-data, seed 002 line 63" {
		t.Errorf("own rule: %+v", own)
	}
}

func TestLoadRejectsBadData(t *testing.T) {
	const good = `profiles:
  - name: p
    product: P
    summary: s
    seed: 001_6cf668ca87b1cdda.txt
    clouds: [public]
    entries:
      - line: 1
        ports: [tcp/443]
        hosts: [a.example.com]
        purpose: x
`
	tests := []struct {
		name, data string
		want       []string
	}{
		{"good", good, nil},
		{"unknown key", strings.Replace(good, "purpose: x", "purpse: x", 1), []string{"field purpse not found"}},
		{"bad port", strings.Replace(good, "tcp/443", "tcp/0", 1), []string{`profile "p": entries[0] (line 1): port "tcp/0"`}},
		{"too broad", strings.Replace(good, "a.example.com", "'*.com'", 1), []string{`host "*.com": pattern "*.com": too broad`}},
		{"unknown placeholder", strings.Replace(good, "a.example.com", "<hub>.example.com", 1), []string{`unknown placeholder <hub>`}},
		{"undeclared param", strings.Replace(good, "a.example.com", "<iot_hub>.example.com", 1), []string{`params [] do not match the placeholders its hosts use [iot_hub]`}},
		{"bad cloud", strings.Replace(good, "[public]", "[mars]", 1), []string{`cloud "mars" is not one of public, usgov, china, all`}},
		{"no line", strings.Replace(good, "line: 1", "line: 0", 1), []string{"line is required"}},
		{"bad seed", strings.Replace(good, "001_6cf668ca87b1cdda.txt", "seed.txt", 1), []string{`seed "seed.txt" is not a seed file name`}},
		{"unknown include", strings.Replace(good, "    entries:", "    includes: [q]\n    entries:", 1), []string{`includes unknown profile "q"`}},
		{"include cycle", strings.Replace(good, "    entries:", "    includes: [p]\n    entries:", 1), []string{`includes form a cycle: p > p`}},
		{"narrow without wildcard", strings.Replace(good, "purpose: x", "purpose: x\n        narrow: b.example.com", 1), []string{"narrow is for an entry with a wildcard host"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{"d/a.yaml": {Data: []byte(tc.data)}}
			_, err := Load(fsys, "d")
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), "catalog d/a.yaml") {
				t.Errorf("error does not name the file: %v", err)
			}
		})
	}
	dup := fstest.MapFS{"d/a.yaml": {Data: []byte(good)}, "d/b.yaml": {Data: []byte(good)}}
	if _, err := Load(dup, "d"); err == nil || !strings.Contains(err.Error(), `profile "p" is already defined in d/a.yaml`) {
		t.Errorf("duplicate profile: %v", err)
	}
}

func TestNormalizeRegion(t *testing.T) {
	for in, want := range map[string]string{"East US 2": "eastus2", "westeurope": "westeurope", " West  Central US ": "westcentralus"} {
		if got := NormalizeRegion(in); got != want {
			t.Errorf("NormalizeRegion(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestGolden pins what operators read and what their tools parse.
func TestGolden(t *testing.T) {
	c := mustDefault(t)
	arc := map[string]string{"region": "East US 2"}
	tests := []struct {
		file string
		run  func(*bytes.Buffer) error
	}{
		{"list.txt", func(b *bytes.Buffer) error { return c.WriteList(b) }},
		{"show-azure-sphere.txt", func(b *bytes.Buffer) error { return c.WriteShow(b, "azure-sphere", "", nil) }},
		{"show-azure-arc-data.txt", func(b *bytes.Buffer) error { return c.WriteShow(b, "azure-arc-data", "", arc) }},
		{"show-azure-stack-hci-recommended-usgov.txt", func(b *bytes.Buffer) error {
			return c.WriteShow(b, "azure-stack-hci-recommended", "usgov", nil)
		}},
		{"export-azure-sphere.yaml", func(b *bytes.Buffer) error { return c.Export(b, "azure-sphere", FormatYAML, "", nil) }},
		{"export-azure-iot-hub.json", func(b *bytes.Buffer) error { return c.Export(b, "azure-iot-hub", FormatJSON, "", nil) }},
		{"export-azure-arc-servers.csv", func(b *bytes.Buffer) error { return c.Export(b, "azure-arc-servers", FormatCSV, "", arc) }},
		{"export-azure-sphere-config.yaml", func(b *bytes.Buffer) error { return c.Export(b, "azure-sphere", FormatConfig, "", nil) }},
		{"export-azure-stack-hci-witness-config.yaml", func(b *bytes.Buffer) error {
			return c.Export(b, "azure-stack-hci-witness", FormatConfig, "china", map[string]string{"witness_storage_account": "contosowitness"})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			var b bytes.Buffer
			if err := tc.run(&b); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "golden", tc.file)
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/catalog -run TestGolden -update)", err)
			}
			if !bytes.Equal(b.Bytes(), want) {
				t.Errorf("%s changed; diff it with go test -update and git diff. Got:\n%s", tc.file, b.String())
			}
		})
	}
}

func TestExportErrors(t *testing.T) {
	c := mustDefault(t)
	var b bytes.Buffer
	if err := c.Export(&b, "azure-iot-hub", FormatConfig, "", nil); err == nil || !strings.Contains(err.Error(), `needs parameter "iot_hub"`) {
		t.Errorf("config export without hub: %v", err)
	}
	if err := c.Export(&b, "azure-sphere", "xml", "", nil); err == nil || !strings.Contains(err.Error(), `unknown format "xml"`) {
		t.Errorf("xml: %v", err)
	}
}

// FuzzCheckParam: whatever value CheckParam accepts renders every template
// of the catalog into a valid pattern, so a config can never turn a
// parameter into a broken or broadened rule.
func FuzzCheckParam(f *testing.F) {
	for _, s := range []string{"contoso-hub", "East US 2", "a.b", "*", "x*", "host.corp.example", "-a", "A", strings.Repeat("a", 64)} {
		f.Add("iot_hub", s)
		f.Add("region", s)
		f.Add("vcenter_server", s)
	}
	c := mustDefault(f)
	f.Fuzz(func(t *testing.T, name, value string) {
		if CheckParam(name, value) != nil {
			return
		}
		for _, p := range c.Profiles() {
			for _, e := range p.Entries {
				for _, h := range append(e.Hosts, e.Narrow) {
					if !strings.Contains(h, "<"+name+">") {
						continue
					}
					host, _, _ := render(h, map[string]string{name: value, "region": "eastus"})
					pat, err := policy.ParsePattern(host)
					if strings.Contains(host, "<"+name+">") {
						continue // another placeholder is still open
					}
					if err != nil {
						t.Fatalf("%s=%q renders %s into %q: %v", name, value, h, host, err)
					}
					if strings.Contains(value, "*") || pat.Kind != policyKindOf(h) {
						t.Fatalf("%s=%q changed the kind of %s: %q", name, value, h, host)
					}
				}
			}
		}
	})
}

// policyKindOf is the kind a template's pattern must keep whatever the
// parameter: a value must never add a wildcard.
func policyKindOf(tmpl string) policy.PatternKind {
	switch {
	case strings.HasPrefix(tmpl, "*."):
		return policy.Below
	case strings.Contains(tmpl, "*"):
		return policy.InLabel
	}
	return policy.Exact
}
