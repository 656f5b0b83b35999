package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/fqdngate/fqdngate/internal/api"
	"github.com/fqdngate/fqdngate/internal/monitor"
)

// runCLI runs the command line as main would.
func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestExitCodesAndMessages(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("mode: enforce\nupstreams: [resolver.example]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A TCP port that answers, for check's exit 0.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	hint := "Run 'fqdngate "
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{nil, exitUsage, "", "Usage:"},
		{[]string{"help"}, exitOK, "fqdngate [command]", ""},
		{[]string{"version"}, exitOK, "fqdngate ", ""},
		{[]string{"--version"}, exitOK, "fqdngate ", ""},
		{[]string{"frobnicate"}, exitUsage, "", `unknown command "frobnicate"`},
		{[]string{"validate"}, exitUsage, "", `required flag(s) "config" not set`},
		{[]string{"validate", "--help"}, exitOK, "fqdngate validate --config FILE", ""},
		{[]string{"run", "--bogus"}, exitUsage, "", "fqdngate run: unknown flag: --bogus\n" + hint + "run --help' for usage."},
		{[]string{"validate", "--config", bad}, exitUsage, "", bad + `:2:13: upstreams[0]: "resolver.example" is not an IP address`},
		{[]string{"validate", "--config", filepath.Join(t.TempDir(), "absent.yaml")}, exitRuntime, "", "absent.yaml: no such file"},
		{[]string{"validate", "--config", "../../examples/gateway.yaml"}, exitOK, "client group sphere-devices: 192.0.2.0/26", ""},
		{[]string{"validate", "--config", "../../internal/config/testdata/validate/dangerous/every-ipv4-address.yaml"}, exitOK, "warnings (", ""},
		{[]string{"validate", "--strict", "--config", "../../internal/config/testdata/validate/dangerous/every-ipv4-address.yaml"}, exitUsage, "", "warning (strict):"},
		{[]string{"validate", "--config", "../../examples/gateway.yaml", "--strict"}, exitUsage, "", "public suffix"},
		{[]string{"teardown", "extra"}, exitUsage, "", `unexpected argument "extra"`},
		{[]string{"version", "extra"}, exitUsage, "", `unexpected argument "extra"`},
		{[]string{"catalog"}, exitUsage, "", "missing command: one of list, show, export\n" + hint + "catalog --help'"},
		{[]string{"check"}, exitUsage, "", "give at least one --profile or --host"},
		{[]string{"check", "--profile", "azure-iot-hub", "--dns", "127.0.0.1"}, exitUsage, "", `needs parameter "iot_hub" for <iot_hub>.azure-devices.net: give --param iot_hub=…`},
		{[]string{"check", "--profile", "azure-arc-k8s", "--dns", "127.0.0.1"}, exitUsage, "", `needs parameter "region"`},
		{[]string{"check", "--profile", "azure-arc-k8s", "--dns", "127.0.0.1"}, exitUsage, "", `give --region, e.g. --region "East US 2"`},
		{[]string{"check", "--host", "example.com", "--dns", "127.0.0.1"}, exitUsage, "", `"example.com" is not HOST:PORT`},
		{[]string{"check", "--host", "a.example:443", "--parallel", "0"}, exitUsage, "", "--parallel is 1-64"},
		{[]string{"check", "--host", "a.example:443", "--parallel", "many"}, exitUsage, "", `invalid argument "many" for "--parallel"`},
		{[]string{"check", "--host", "a.example:443", "--dns", "resolver"}, exitUsage, "", `--dns "resolver" is not IP or IP:port`},
		{[]string{"check", "--profile", "azure-sphere", "--cloud", "china", "--dns", "127.0.0.1"}, exitUsage, "", `no endpoints for cloud "china"`},
		{[]string{"check", "--host", "127.0.0.1:1", "--dns", "127.0.0.1:1", "--timeout", "2s"}, exitCheckFailed, "tcp-refused", ""},
		{[]string{"check", "--host", ln.Addr().String(), "--dns", "127.0.0.1:1", "--timeout", "2s"}, exitOK, "PASS", ""},
		{[]string{"check", "extra", "--host", "a.example:443"}, exitUsage, "", `unexpected argument "extra"`},
		{[]string{"catalog", "--help"}, exitOK, "fqdngate catalog list | show NAME | export NAME --format F", ""},
		{[]string{"catalog", "list"}, exitOK, "azure-stack-hci-recommended", ""},
		{[]string{"catalog", "lst"}, exitUsage, "", `unknown command "lst" for "fqdngate catalog" (did you mean list?)`},
		{[]string{"catalog", "show"}, exitUsage, "", "missing argument NAME"},
		{[]string{"catalog", "show", "a", "b"}, exitUsage, "", `unexpected argument "b"`},
		{[]string{"catalog", "show", "azure-spere"}, exitUsage, "", `unknown profile "azure-spere" (did you mean "azure-sphere"?)`},
		{[]string{"catalog", "show", "azure-sphere", "--cloud", "mars"}, exitUsage, "", `invalid argument "mars" for "--cloud" flag: "mars" is not one of public, usgov, china`},
		{[]string{"catalog", "show", "azure-arc-k8s", "--region", "East US 2"}, exitOK, "eastus2.dp.kubernetesconfiguration.azure.com", ""},
		{[]string{"catalog", "show", "azure-sphere", "--param", "hub"}, exitUsage, "", `"hub" is not NAME=VALUE`},
		{[]string{"catalog", "export", "azure-sphere"}, exitUsage, "", `required flag(s) "format" not set`},
		{[]string{"catalog", "export", "azure-sphere", "--format", "xml"}, exitUsage, "", `"xml" is not one of yaml, json, csv, config`},
		{[]string{"catalog", "export", "azure-iot-hub", "--format", "config"}, exitUsage, "", `needs parameter "iot_hub" for <iot_hub>.azure-devices.net: give --param iot_hub=…`},
		{[]string{"catalog", "export", "azure-iot-hub", "--format", "config", "--param", "iot_hub=contoso-hub"}, exitOK, `fqdn: ["contoso-hub.azure-devices.net"]`, ""},
		{[]string{"catalog", "export", "azure-sphere", "--format", "config", "--cloud", "china"}, exitUsage, "", `has no endpoints for cloud "china"`},
		{[]string{"catalog", "export", "azure-sphere-ntp", "--format", "csv"}, exitOK, "azure-sphere-ntp,azure-sphere-ntp,prod.time.sphere.azure.net,,udp/123", ""},
		{[]string{"explain"}, exitUsage, "", "missing argument ADDR"},
		{[]string{"explain", "203.0.113.7", "--client", "bogus"}, exitUsage, "", `invalid argument "bogus" for "--client" flag`},
		{[]string{"explain", "--client", "bogus", "203.0.113.7"}, exitUsage, "", hint + "explain --help' for usage."},
		{[]string{"explain", "203.0.113.7", "--port", "tcp/1-2"}, exitUsage, "", `"tcp/1-2" is not one port like tcp/443`},
		{[]string{"explain", "nope"}, exitUsage, "", `"nope" is not an IP address`},
		{[]string{"explain", "203.0.113.7", "--api", "localhost"}, exitUsage, "", `"localhost" is not IP:port`},
		{[]string{"explain", "203.0.113.7", "--api", "127.0.0.1:1"}, exitRuntime, "", "cannot reach fqdngate's API"},
		{[]string{"suggest", "--api", "127.0.0.1:1"}, exitRuntime, "", "cannot reach fqdngate's API"},
		{[]string{"completion", "tcsh"}, exitUsage, "", `invalid argument "tcsh"`},
		{[]string{"completion"}, exitUsage, "", "missing argument SHELL"},
		{[]string{"man"}, exitUsage, "", "missing argument DIR"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errs := runCLI(tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errs)
			}
			if !strings.Contains(out, tc.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdout, out)
			}
			if !strings.Contains(errs, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, errs)
			}
			// A usage error is one line and the hint.
			if code == exitUsage && strings.Contains(errs, hint) && strings.Count(errs, "\n") != 2 {
				t.Errorf("usage error is not one line and a hint:\n%s", errs)
			}
		})
	}
}

// allCommands lists every command of the tree, as its path's words.
func allCommands(t *testing.T) [][]string {
	t.Helper()
	root := newRootCmd(&bytes.Buffer{}, &bytes.Buffer{})
	root.InitDefaultHelpCmd()
	var out [][]string
	var visit func(c *cobra.Command, path []string)
	visit = func(c *cobra.Command, path []string) {
		out = append(out, path)
		for _, sub := range c.Commands() {
			visit(sub, append(append([]string{}, path...), sub.Name()))
		}
	}
	visit(root, nil)
	if len(out) < 16 {
		t.Fatalf("only %d commands: %v", len(out), out)
	}
	return out
}

// TestHelp: every command's --help (and -h) prints its help on stdout,
// nothing on stderr, and exits 0.
func TestHelp(t *testing.T) {
	for _, path := range allCommands(t) {
		for _, h := range []string{"--help", "-h"} {
			args := append(append([]string{}, path...), h)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				code, out, errs := runCLI(args...)
				want := strings.Join(append([]string{"Usage:\n  fqdngate"}, path...), " ")
				if code != exitOK || !strings.Contains(out, want) || errs != "" {
					t.Errorf("exit %d, stdout lacks %q or stderr not empty:\nstdout: %s\nstderr: %s", code, want, out, errs)
				}
			})
		}
	}
}

// fakeExplain serves GET /api/v1/explain as the daemon would after a drop
// on tcp/8443 of an address that is open on tcp/443.
func fakeExplain(t *testing.T, dropAt time.Time) (string, *[]string) {
	t.Helper()
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/explain" {
			http.NotFound(w, r)
			return
		}
		queries = append(queries, r.URL.RawQuery)
		client, addr := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("203.0.113.7")
		resp := api.ExplainResponse{Explanation: monitor.Explanation{Reason: monitor.Allowed, Client: client, Addr: addr,
			Name: "www.example.com", Rules: []string{"web"}, Ports: []string{"tcp/443"}, TTL: 60, Expires: dropAt.Add(time.Minute),
			Message: "203.0.113.7 is www.example.com for 192.0.2.10 on tcp/443 until ..."}}
		if r.URL.Query().Get("port") == "" {
			resp.LatestDrop = &monitor.LatestDrop{Time: dropAt, Explanation: monitor.Explanation{Reason: monitor.WrongPort,
				Client: client, Addr: addr, Port: "tcp/8443", Message: "203.0.113.7 is www.example.com for 192.0.2.10, allowed on tcp/443, not on tcp/8443: add the port to rule web"}}
		}
		_ = json.NewEncoder(w).Encode(resp)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), &queries
}

// TestExplainLatestDrop: without --port, the client's latest drop comes
// first, then what is open now; with --port, only that port.
func TestExplainLatestDrop(t *testing.T) {
	at := time.Now().Add(-12 * time.Second).UTC().Truncate(time.Second)
	addr, queries := fakeExplain(t, at)
	code, out, errs := runCLI("explain", "203.0.113.7", "--client", "192.0.2.10", "--api", addr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(out, "\n")
	wantFirst := "latest drop: reason port, port tcp/8443, at " + at.Format(time.RFC3339) + " ("
	if !strings.HasPrefix(lines[0], wantFirst) || !strings.Contains(lines[1], "not on tcp/8443") ||
		!strings.HasPrefix(lines[3], "now: 203.0.113.7 is www.example.com") || !strings.Contains(out, "  reason: allowed\n") {
		t.Errorf("output:\n%s\nwant first %q", out, wantFirst)
	}
	code, out, _ = runCLI("explain", "--port", "tcp/443", "--api", addr, "203.0.113.7")
	if code != exitOK || strings.Contains(out, "latest drop") || !strings.HasPrefix(out, "203.0.113.7 is www.example.com") {
		t.Errorf("with --port: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI("explain", "203.0.113.7", "--api", addr, "--json")
	var r api.ExplainResponse
	if code != exitOK || json.Unmarshal([]byte(out), &r) != nil || r.LatestDrop == nil || r.LatestDrop.Reason != monitor.WrongPort || r.Reason != monitor.Allowed {
		t.Errorf("--json: exit %d\n%s", code, out)
	}
	want := []string{"addr=203.0.113.7&client=192.0.2.10", "addr=203.0.113.7&port=tcp%2F443", "addr=203.0.113.7"}
	if strings.Join(*queries, " ") != strings.Join(want, " ") {
		t.Errorf("queries %q, want %q", *queries, want)
	}
}

// TestFlagOrder: flags before and after the arguments mean the same.
func TestFlagOrder(t *testing.T) {
	addr, _ := fakeExplain(t, time.Now())
	tests := []struct {
		name        string
		after, bfor []string
	}{
		{"catalog export", []string{"catalog", "export", "azure-sphere", "--format", "yaml"}, []string{"catalog", "export", "--format", "yaml", "azure-sphere"}},
		{"catalog export params", []string{"catalog", "export", "azure-iot-hub", "--format", "config", "--param", "iot_hub=contoso-hub"},
			[]string{"catalog", "export", "--param", "iot_hub=contoso-hub", "--format=config", "azure-iot-hub"}},
		{"catalog show", []string{"catalog", "show", "azure-arc-k8s", "--region", "East US 2"}, []string{"catalog", "show", "--region", "East US 2", "azure-arc-k8s"}},
		{"explain", []string{"explain", "203.0.113.7", "--client", "192.0.2.10", "--api", addr, "--port", "tcp/443"},
			[]string{"explain", "--client", "192.0.2.10", "--api", addr, "--port", "tcp/443", "203.0.113.7"}},
		{"teardown", []string{"teardown", "--table", "x", "--help"}, []string{"teardown", "--help", "--table", "x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c1, o1, e1 := runCLI(tc.after...)
			c2, o2, e2 := runCLI(tc.bfor...)
			if c1 != exitOK || c2 != exitOK || o1 != o2 || o1 == "" {
				t.Errorf("after: exit %d %s\n%s\nbefore: exit %d %s\n%s", c1, e1, o1, c2, e2, o2)
			}
		})
	}
}

// TestCompletion: the scripts come out for each shell, and bash parses
// the bash one.
func TestCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		t.Run(sh, func(t *testing.T) {
			code, out, errs := runCLI("completion", sh)
			if code != exitOK || !strings.Contains(out, "fqdngate") || errs != "" {
				t.Fatalf("exit %d: %s", code, errs)
			}
			if sh != "bash" {
				return
			}
			bash, err := exec.LookPath("bash")
			if err != nil {
				t.Fatal("bash: ", err)
			}
			script := filepath.Join(t.TempDir(), "fqdngate.bash")
			if err := os.WriteFile(script, []byte(out), 0o600); err != nil {
				t.Fatal(err)
			}
			if b, err := exec.Command(bash, "-n", script).CombinedOutput(); err != nil {
				t.Errorf("bash -n: %v\n%s", err, b)
			}
			// And it completes: the commands, a profile name, a flag's values.
			for _, tc := range []struct{ args, want string }{
				{"", "explain"}, {"catalog show azure-sph", "azure-sphere"}, {"catalog export x --format ", "config"},
			} {
				args := append([]string{"__complete"}, strings.Fields(tc.args)...)
				if strings.HasSuffix(tc.args, " ") || tc.args == "" {
					args = append(args, "")
				}
				if _, out, _ := runCLI(args...); !strings.Contains(out, tc.want) {
					t.Errorf("complete %q: %q lacks %q", tc.args, out, tc.want)
				}
			}
		})
	}
}

// TestManPages: one page per command, dated SOURCE_DATE_EPOCH.
func TestManPages(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "man8")
	t.Setenv("SOURCE_DATE_EPOCH", "1800000000")
	if code, _, errs := runCLI("man", dir); code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, path := range allCommands(t) {
		if len(path) > 0 && path[0] == "help" {
			continue
		}
		file := filepath.Join(dir, strings.Join(append([]string{"fqdngate"}, path...), "-")+".8")
		b, err := os.ReadFile(file)
		if err != nil {
			t.Error(err)
			continue
		}
		if !strings.Contains(string(b), `.TH "FQDNGATE" "8" "Jan 2027"`) {
			t.Errorf("%s: header %q", file, strings.SplitN(string(b), "\n", 3)[:2])
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "fqdngate-explain.8"))
	if err != nil || !strings.Contains(string(b), "latest drop") || !strings.Contains(string(b), `\fB--client\fP`) {
		t.Errorf("explain page: %v\n%s", err, b)
	}
	if code, _, errs := runCLI("man", filepath.Join(t.TempDir(), "f", "\x00")); code != exitRuntime {
		t.Errorf("unwritable dir: exit %d %s", code, errs)
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
	if code, _, errs := runCLI("run", "--config", "/nonexistent/fqdngate.yaml"); code != exitRuntime || !strings.Contains(errs, "no such file") {
		t.Errorf("run --config: exit %d %s", code, errs)
	}
}
