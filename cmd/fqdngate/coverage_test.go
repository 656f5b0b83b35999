package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/api"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/*.golden")

const testTags = "../../internal/servicetags/testdata/ServiceTags_Public_test.json"

// fakeLedger serves GET /api/v1/ledger as the daemon would.
func fakeLedger(t *testing.T, entries map[string][]string) string {
	t.Helper()
	var resp api.LedgerResponse
	for name, addrs := range entries {
		for _, a := range addrs {
			resp.Entries = append(resp.Entries, api.LedgerEntry{Client: netip.MustParseAddr("192.0.2.10"), Group: "devices",
				Name: name, Addr: netip.MustParseAddr(a), Rules: []string{"r"}, Ports: []string{"tcp/443"}})
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/ledger" || r.URL.Query().Get("limit") != "10000" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(resp)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestCoverageCommand(t *testing.T) {
	addr := fakeLedger(t, map[string][]string{
		"contoso-hub.azure-devices.net": {"203.0.113.70", "203.0.113.71"},
		"prod.update.sphere.azure.net":  {"192.0.2.77", "192.0.2.78"},
		"unrelated.example.org":         {"198.51.100.33"},
	})
	tests := []struct {
		name   string
		args   []string
		golden string
	}{
		{"profile", []string{"--profile", "azure-iot-hub", "--param", "iot_hub=contoso-hub", "--profile", "azure-sphere"}, "coverage_profile.golden"},
		{"all json", []string{"--json", "--asn-prefixes", "../../internal/servicetags/testdata/asn.txt"}, "coverage_all_json.golden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			args := append([]string{"coverage", "--service-tags", testTags, "--api", addr}, tt.args...)
			if code := run(args, &out, &errb); code != exitOK {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			got := bytes.ReplaceAll(out.Bytes(), []byte(addr), []byte("127.0.0.1:9053"))
			path := filepath.Join("testdata", tt.golden)
			if *updateGolden {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s:\n%s", path, got)
			}
		})
	}
}

func TestCoverageUsage(t *testing.T) {
	broken := filepath.Join(t.TempDir(), "asn.txt")
	if err := os.WriteFile(broken, []byte("192.0.2.0/24 64500\n192.0.2.0/24\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"coverage"}, exitUsage, `required flag(s) "service-tags" not set`},
		{[]string{"coverage", "--service-tags", "../../internal/servicetags/testdata/broken_prefix.json"}, exitUsage,
			`broken_prefix.json: values[0].properties.addressPrefixes[3]: "192.0.2.0/33" is not a prefix`},
		{[]string{"coverage", "--service-tags", "absent.json"}, exitRuntime, "absent.json: no such file"},
		{[]string{"coverage", "--service-tags", testTags, "--asn-prefixes", broken}, exitUsage, `asn.txt:2: "192.0.2.0/24": want PREFIX ASN [NAME]`},
		{[]string{"coverage", "--service-tags", testTags, "--resolve"}, exitUsage, "--resolve needs --profile or --config"},
		{[]string{"coverage", "--service-tags", testTags, "--resolve", "--profile", "azure-sphere", "--dns", "resolver"}, exitUsage, `--dns "resolver" is not IP or IP:port`},
		{[]string{"coverage", "--service-tags", testTags, "--profile", "azure-spere"}, exitUsage, `unknown profile "azure-spere"`},
		{[]string{"coverage", "--service-tags", testTags, "--api", "127.0.0.1:1"}, exitRuntime, "cannot reach fqdngate's API"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args[1:], " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(tc.args, &out, &errb); code != tc.code {
				t.Errorf("exit %d, want %d\nstderr: %s", code, tc.code, errb.String())
			}
			if !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, errb.String())
			}
		})
	}
}

// TestCoverageResolve: --resolve asks --dns for the names of --config's
// rules now; the wildcard is listed as unresolvable.
func TestCoverageResolve(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	answers := map[string]string{"hub.example.net.": "203.0.113.70", "cdn.example.net.": "192.0.2.77"}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if a, ok := answers[q.Question[0].Name]; ok && q.Question[0].Qtype == dns.TypeA {
			rr, _ := dns.NewRR(q.Question[0].Name + " 60 IN A " + a)
			m.Answer = append(m.Answer, rr)
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	cfg := filepath.Join(t.TempDir(), "gw.yaml")
	if err := os.WriteFile(cfg, []byte(`mode: enforce
upstreams: ["198.51.100.53"]
clients:
  - name: devices
    cidrs: ["192.0.2.0/24"]
    rules:
      - name: r
        fqdn: ["hub.example.net", "cdn.example.net", "*.wild.example.net"]
        ports: ["tcp/443"]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	args := []string{"coverage", "--service-tags", testTags, "--resolve", "--config", cfg, "--dns", pc.LocalAddr().String(), "--json"}
	if code := run(args, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var r struct {
		Source    string `json:"source"`
		Endpoints []struct {
			Name, Coverage string
		} `json:"endpoints"`
		Unresolvable []string `json:"unresolvable"`
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(r.Endpoints, r.Unresolvable)
	if want := "[{cdn.example.net none} {hub.example.net covered}] [*.wild.example.net]"; got != want || !strings.HasPrefix(r.Source, "resolved now through 127.0.0.1:") {
		t.Errorf("got %s from %q, want %s", got, r.Source, want)
	}
}
