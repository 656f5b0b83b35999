package config

import (
	"bytes"
	"strings"
	"testing"
)

// TestFairnessDefaults: the per-client caps when unset, and explicit
// zeros (no limit) kept.
func TestFairnessDefaults(t *testing.T) {
	for _, c := range []struct {
		name, extra, group  string
		perClient           int
		maxQPS, maxInflight int
	}{
		{name: "scope client: a fair share", perClient: DefaultMaxEntries / DefaultEntriesShare,
			maxQPS: DefaultClientMaxQPS, maxInflight: DefaultClientMaxInflight},
		{name: "scope global: max_entries", extra: "enforcer:\n  scope: global\n", perClient: DefaultMaxEntries,
			maxQPS: DefaultClientMaxQPS, maxInflight: DefaultClientMaxInflight},
		{name: "share of a set max_entries", extra: "enforcer:\n  max_entries: 1000\n", perClient: 125,
			maxQPS: DefaultClientMaxQPS, maxInflight: DefaultClientMaxInflight},
		{name: "explicit values", extra: "enforcer:\n  max_entries: 1000\n  max_entries_per_client: 50\n",
			group: "    max_qps: 20\n    max_inflight: 4\n", perClient: 50, maxQPS: 20, maxInflight: 4},
		{name: "explicit zeros: no limit", group: "    max_qps: 0\n    max_inflight: 0\n",
			perClient: DefaultMaxEntries / DefaultEntriesShare},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse("t.yaml", []byte(fairnessBase(c.group)+c.extra))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Enforcer.MaxEntriesPerClient; got != c.perClient {
				t.Errorf("max_entries_per_client %d, want %d", got, c.perClient)
			}
			if cl := cfg.Clients[0]; cl.MaxQPS != c.maxQPS || cl.MaxInflight != c.maxInflight {
				t.Errorf("max_qps %d max_inflight %d, want %d %d", cl.MaxQPS, cl.MaxInflight, c.maxQPS, c.maxInflight)
			}
		})
	}
}

func fairnessBase(group string) string {
	return `mode: enforce
upstreams: ["198.51.100.53"]
clients:
  - name: devices
    cidrs: ["192.0.2.0/24"]
` + group + `    rules:
      - name: hub
        fqdn: ["contoso-hub.azure-devices.net"]
        ports: ["tcp/443"]
`
}

func TestFairnessErrors(t *testing.T) {
	for _, c := range []struct {
		name, extra, group, want string
	}{
		{"quota above max_entries", "enforcer:\n  max_entries: 1000\n  max_entries_per_client: 1001\n", "",
			"t.yaml:12:27: enforcer.max_entries_per_client: 1001 is outside 1..max_entries (1000)"},
		{"negative quota", "enforcer:\n  max_entries_per_client: -1\n", "",
			"t.yaml:11:27: enforcer.max_entries_per_client: -1 is outside 1..max_entries (262144)"},
		{"negative max_qps", "", "    max_qps: -5\n",
			"t.yaml:6:14: clients[0].max_qps: -5 is outside 0..1000000 (0: no limit)"},
		{"max_inflight too large", "", "    max_inflight: 70000\n",
			"t.yaml:6:19: clients[0].max_inflight: 70000 is outside 0..65536 (0: no limit)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(fairnessBase(c.group)+c.extra))
			if err == nil || strings.TrimSpace(err.Error()) != c.want {
				t.Fatalf("error %v\nwant    %s", err, c.want)
			}
		})
	}
}

func TestFairnessEffective(t *testing.T) {
	cfg, err := Parse("t.yaml", []byte(fairnessBase("    max_qps: 0\n")+"enforcer:\n  max_entries: 1000\n"))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := cfg.WriteEffective(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"256 addresses per name, 125 ledger entries per client, 1000 in all",
		"per client: no query rate limit, max_inflight 32; beyond: REFUSED, rate limited",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("effective config lacks %q:\n%s", want, b.String())
		}
	}
}
