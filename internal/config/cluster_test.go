package config

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestClusterSection(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "nats.token")
	if err := os.WriteFile(token, []byte("cluster-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(dir, "loose.token")
	if err := os.WriteFile(loose, []byte("cluster-secret-0123456789\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	two := "cluster:\n  name: site1\n  node: gw1\n  nats: embedded\n  listen: 192.0.2.11\n  routes: [nats://192.0.2.11, \"nats://192.0.2.12:7222\"]\n  token_file: " + token + "\n"
	tests := []struct {
		name string
		file string
		// want is a part of the error, "" for a valid file; check looks at
		// what a valid one became.
		want  string
		check func(t *testing.T, c *Config)
	}{
		{"none", minimal, "", func(t *testing.T, c *Config) {
			if c.Cluster != nil || c.Derived.Cluster != nil {
				t.Errorf("cluster %+v derived %+v, want nil", c.Cluster, c.Derived.Cluster)
			}
		}},
		{"embedded alone, defaults", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: embedded\n", "", func(t *testing.T, c *Config) {
			d := c.Derived.Cluster
			if !c.Cluster.Embedded() || d.Listen.String() != "127.0.0.1:6222" || d.Routes != nil || d.URLs != nil || d.Token != "" {
				t.Errorf("derived %+v", d)
			}
			if c.Cluster.CatchupTimeout != DefaultCatchupTimeout {
				t.Errorf("catchup_timeout %s", c.Cluster.CatchupTimeout)
			}
		}},
		{"two nodes", minimal + two, "", func(t *testing.T, c *Config) {
			d := c.Derived.Cluster
			if d.Listen.String() != "192.0.2.11:6222" || !slices.Equal(d.Routes, []string{"nats://192.0.2.11:6222", "nats://192.0.2.12:7222"}) || d.Token != "cluster-secret-0123456789" {
				t.Errorf("derived %+v", d)
			}
			if got := c.Cluster.AnswersSubject(); got != "fqdngate.site1.gw1.answers" {
				t.Errorf("subject %q", got)
			}
		}},
		{"v6 routes", minimal + "cluster:\n  name: s\n  node: n\n  nats: [embedded]\n  listen: \"[2001:db8::11]:6000\"\n  routes: [\"nats://[2001:db8::12]\", \"nats://2001:db8::13\"]\n  token_file: " + token + "\n", "", func(t *testing.T, c *Config) {
			d := c.Derived.Cluster
			if d.Listen.String() != "[2001:db8::11]:6000" || !slices.Equal(d.Routes, []string{"nats://[2001:db8::12]:6222", "nats://[2001:db8::13]:6222"}) {
				t.Errorf("derived %+v", d)
			}
		}},
		{"external, one URL as a scalar", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: tls://nats.example.net:4222\n  catchup_timeout: 30s\n", "", func(t *testing.T, c *Config) {
			d := c.Derived.Cluster
			if c.Cluster.Embedded() || !slices.Equal(d.URLs, []string{"tls://nats.example.net:4222"}) || d.Listen.IsValid() || c.Cluster.CatchupTimeout != 30*time.Second {
				t.Errorf("cluster %+v derived %+v", c.Cluster, d)
			}
		}},
		{"external, list", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: [nats://198.51.100.4, nats://198.51.100.5:4222]\n", "", func(t *testing.T, c *Config) {
			if d := c.Derived.Cluster; !slices.Equal(d.URLs, []string{"nats://198.51.100.4", "nats://198.51.100.5:4222"}) {
				t.Errorf("urls %v", d.URLs)
			}
		}},
		{"name missing", minimal + "cluster:\n  node: gw1\n  nats: embedded\n", "cluster.name: required", nil},
		{"node with a dot", minimal + "cluster:\n  name: site1\n  node: gw.1\n  nats: embedded\n", `t.yaml:12:9: cluster.node: "gw.1" is not a cluster node: letters, digits, '_' and '-', at most 64 (it is a NATS subject token`, nil},
		{"name with a wildcard", minimal + "cluster:\n  name: \"site*\"\n  node: gw1\n  nats: embedded\n", "cluster.name: \"site*\" is not a cluster name", nil},
		{"nats missing", minimal + "cluster:\n  name: site1\n  node: gw1\n", "cluster.nats: required: embedded, or the nats://", nil},
		{"nats a number", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: 5\n", `t.yaml:13:9: cluster.nats[0]: "5" is not a nats:// or tls:// URL`, nil},
		{"nats a mapping", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: {a: b}\n", "t.yaml:13:9: cluster.nats: expected a list, got a mapping", nil},
		{"http URL", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: [http://198.51.100.4]\n", `cluster.nats[0]: "http://198.51.100.4" is not a nats:// or tls:// URL`, nil},
		{"URL without host", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: [\"nats://:4222\"]\n", "has no host", nil},
		{"URL with credentials", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: [nats://me:pw@198.51.100.4]\n", "holds credentials: put the token in cluster.token_file", nil},
		{"embedded and a URL", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: [embedded, nats://198.51.100.4]\n", `cluster.nats[0]: "embedded" is not a nats:// or tls:// URL (or embedded, alone)`, nil},
		{"listen with external", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: nats://198.51.100.4\n  listen: 192.0.2.11\n", "cluster.listen: only with nats: embedded", nil},
		{"routes with external", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: nats://198.51.100.4\n  routes: [nats://192.0.2.12]\n", "cluster.routes: only with nats: embedded", nil},
		{"listen a name", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: embedded\n  listen: gw1.example.net\n", `cluster.listen: "gw1.example.net" is not an IP address`, nil},
		{"route a name", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: embedded\n  listen: 127.0.0.1\n  routes: [nats://gw2.example.net]\n", `cluster.routes[0]: "nats://gw2.example.net" is not nats://IP[:port]`, nil},
		{"route without scheme", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: embedded\n  listen: 127.0.0.1\n  routes: [192.0.2.12]\n", `cluster.routes[0]: "192.0.2.12" is not nats://IP[:port]`, nil},
		{"route twice", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: embedded\n  listen: 127.0.0.1\n  routes: [nats://192.0.2.12, \"nats://192.0.2.12:6222\"]\n", "cluster.routes[1]: 192.0.2.12:6222 is already routes[0]", nil},
		{"routes without listen", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: embedded\n  routes: [nats://192.0.2.12]\n", "cluster.listen: required with routes", nil},
		{"off loopback without token", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: embedded\n  listen: 192.0.2.11\n  routes: [nats://192.0.2.12]\n", "t.yaml:14:11: cluster.token_file: required: the embedded server listens on 192.0.2.11:6222, not loopback", nil},
		{"token readable by others", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: embedded\n  token_file: " + loose + "\n", "cluster.token_file: " + loose + " has mode 0644", nil},
		{"token relative", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: embedded\n  token_file: nats.token\n", `cluster.token_file: "nats.token" is not an absolute path`, nil},
		{"catchup zero", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: embedded\n  catchup_timeout: 0s\n", "cluster.catchup_timeout: 0s is outside 1ms..5m0s", nil},
		{"catchup too long", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: embedded\n  catchup_timeout: 6m\n", "cluster.catchup_timeout: 6m0s is outside", nil},
		{"catchup a word", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: embedded\n  catchup_timeout: soon\n", "cluster.catchup_timeout: expected a duration", nil},
		{"misspelt key", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: embedded\n  rutes: []\n", "cluster.rutes: unknown key; did you mean routes?", nil},
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
			tc.check(t, c)
		})
	}
}

func TestClusterWarningsAndView(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "nats.token")
	if err := os.WriteFile(token, []byte("cluster-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		file  string
		warns []string // parts of the warnings, in order
		view  []string // parts of the effective configuration
	}{
		{"two nodes", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: embedded\n  listen: 192.0.2.11\n  routes: [nats://192.0.2.12]\n  token_file: " + token + "\n", nil,
			[]string{"cluster: site site1, node gw1", "routes listen on 192.0.2.11:6222", "peers: nats://192.0.2.12:6222", "publishes: fqdngate.site1.gw1.answers", "token: " + token, "alone after 10s"}},
		{"alone without state", "state_dir: \"\"\n" + minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: embedded\n",
			[]string{"t.yaml:1:12: state_dir: warning: no state_dir in a cluster: a restarted node forgets", "cluster.nats: warning: embedded without routes: one node, nothing to replicate to"},
			[]string{"peers: none (no routes)"}},
		{"external", minimal + "cluster:\n  name: site1\n  node: gw1\n  nats: tls://nats.example.net\n", nil,
			[]string{"nats: external, tls://nats.example.net", "peers: every node of site site1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("t.yaml", []byte(tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Derived.Warnings) != len(tc.warns) {
				t.Fatalf("warnings %v, want %d", c.Derived.Warnings, len(tc.warns))
			}
			for i, w := range tc.warns {
				if got := c.Derived.Warnings[i].Error(); !strings.Contains(got, w) {
					t.Errorf("warning %d %q, want %q", i, got, w)
				}
			}
			var b bytes.Buffer
			if err := c.WriteEffective(&b); err != nil {
				t.Fatal(err)
			}
			for _, v := range tc.view {
				if !strings.Contains(b.String(), v) {
					t.Errorf("effective configuration lacks %q:\n%s", v, b.String())
				}
			}
			if _, err := Parse("t.yaml", []byte(tc.file), WithStrict(true)); (err != nil) != (len(tc.warns) > 0) {
				t.Errorf("strict: %v", err)
			}
		})
	}
}
