package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// labTags is a service tags file in the downloaded format for the lab: a
// test tag holding www.example.com's addresses, and a tag elsewhere. The
// CDN's addresses (rot.example.com, 203.0.113.10 and up) are in none.
func labTags(extra string) string {
	return fmt.Sprintf(`{
  "changeNumber": 7,
  "cloud": "Public",
  "values": [
    {"name": "AzureIoTHub.EastUS", "id": "AzureIoTHub.EastUS",
     "properties": {"changeNumber": 3, "region": "eastus", "regionId": 32, "platform": "Azure", "systemService": "AzureIoTHub",
       "addressPrefixes": ["203.0.113.4/31", "2001:db8:cd::4/126"%s], "networkFeatures": null}},
    {"name": "AzureResourceManager", "id": "AzureResourceManager",
     "properties": {"changeNumber": "2", "region": "", "platform": "Azure", "systemService": "AzureResourceManager",
       "addressPrefixes": ["198.51.100.128/27"], "networkFeatures": ["API", "NSG"]}}
  ]
}
`, extra)
}

// coverageClients: the default web rule, and a static rule on tcp/8883 for
// the test tag; device B is in a nested group of its own, with no static
// rule.
func coverageClients(tagsPath string) string {
	return fmt.Sprintf(`cache_size: 0
clients:
  - name: devices
    cidrs: ["192.0.2.0/24", "2001:db8:1::/64"]
    rules:
      - name: web
        fqdn: ["www.example.com", "rot.example.com"]
        ports: ["tcp/443"]
      - name: hub
        ports: ["tcp/8883"]
        static:
          service_tags: %s
          tags: [AzureIoTHub.EastUS]
  - name: other
    cidrs: ["%s/32"]
    rules:
      - name: web
        fqdn: ["www.example.com"]
        ports: ["tcp/443"]
`, tagsPath, devBAddr4)
}

// coverageReport is the --json contract (DESIGN section 13).
type coverageReport struct {
	Schema    int `json:"schema"`
	Endpoints []struct {
		Name      string `json:"name"`
		Coverage  string `json:"coverage"`
		Addresses []struct {
			Addr netip.Addr `json:"addr"`
			Tags []string   `json:"tags"`
		} `json:"addresses"`
	} `json:"endpoints"`
	Answer struct {
		TagRule  []string `json:"tag_rule"`
		FQDNOnly []string `json:"fqdn_only"`
	} `json:"answer"`
}

// TestCoverage: `fqdngate coverage` over what the running gateway's ledger
// holds marks the CDN name "none" and the name whose addresses sit in the
// test tag "covered"; the table says so in words.
func TestCoverage(t *testing.T) {
	tags := filepath.Join(t.TempDir(), "ServiceTags_Public_lab.json")
	if err := os.WriteFile(tags, []byte(labTags("")), 0o600); err != nil {
		t.Fatal(err)
	}
	tp := newTopoClients(t, "enforce", coverageClients(tags))
	tp.addrsOf(t, tp.devA, "www.example.com.", dns.TypeA, gwDevAddr4)
	tp.addrsOf(t, tp.devA, "www.example.com.", dns.TypeAAAA, gwDevAddr6) // over IPv4 it is withheld in client scope
	for range 3 {                                                        // the CDN rotates: three answers, three addresses
		tp.addrsOf(t, tp.devA, "rot.example.com.", dns.TypeA, gwDevAddr4)
	}

	out, err := tp.gw.Command(binary, "coverage", "--service-tags", tags, "--json").Output()
	if err != nil {
		t.Fatalf("coverage --json: %v", err)
	}
	var r coverageReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	got := map[string]string{}
	for _, ep := range r.Endpoints {
		got[ep.Name] = ep.Coverage
		for _, a := range ep.Addresses {
			if inTag := netip.MustParsePrefix("203.0.113.4/31").Contains(a.Addr) || netip.MustParsePrefix("2001:db8:cd::4/126").Contains(a.Addr); inTag != (len(a.Tags) == 1 && a.Tags[0] == "AzureIoTHub.EastUS") {
				t.Errorf("%s %s: tags %v", ep.Name, a.Addr, a.Tags)
			}
		}
		if ep.Name == "rot.example.com" && len(ep.Addresses) != 3 {
			t.Errorf("rot.example.com: %d addresses, want the 3 the device was given", len(ep.Addresses))
		}
	}
	if r.Schema != 1 || got["www.example.com"] != "covered" || got["rot.example.com"] != "none" || len(got) != 2 {
		t.Errorf("schema %d, coverage %v; want www.example.com covered, rot.example.com none\n%s", r.Schema, got, out)
	}
	if strings.Join(r.Answer.TagRule, ",") != "www.example.com" || strings.Join(r.Answer.FQDNOnly, ",") != "rot.example.com" {
		t.Errorf("answer %+v", r.Answer)
	}

	// The ASN half of the question: the lab's "internet" as a CDN's AS,
	// with the test tag's corner in a cloud's.
	asn := filepath.Join(t.TempDir(), "asn.txt")
	if err := os.WriteFile(asn, []byte("203.0.113.0/24 64500 EXAMPLE-CDN\n203.0.113.0/29 AS64501 EXAMPLE-CLOUD\n2001:db8:cd::/48 64500\n2001:db8:cd::/120 64501\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	table, err := tp.gw.Run(binary, "coverage", "--service-tags", tags, "--asn-prefixes", asn)
	if err != nil {
		t.Fatalf("coverage: %v\n%s", err, table)
	}
	t.Logf("fqdngate coverage on the lab:\n%s", table)
	for _, want := range []string{
		"A service-tag rule could carry 1 of 2 endpoints: www.example.com. It would allow AzureIoTHub.EastUS",
		"1 endpoint needs FQDN enforcement anyway: rot.example.com (no tag holds its addresses)",
		"AS64500 EXAMPLE-CDN would open 256 IPv4 addresses and 65,536 IPv6 /64s (2 prefixes), for every customer it serves",
		"203.0.113.11    -                   -                   AS64500 EXAMPLE-CDN",
		"203.0.113.5     AzureIoTHub.EastUS  203.0.113.4/31      AS64501 EXAMPLE-CLOUD",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("the table lacks %q", want)
		}
	}
}

// TestStaticRule: a static rule opens its tag's prefixes on its port only,
// for its group only, without any DNS; validate reports it with its
// address count; SIGHUP with a fresh tags file opens the new prefix.
func TestStaticRule(t *testing.T) {
	tags := filepath.Join(t.TempDir(), "ServiceTags_Public_lab.json")
	if err := os.WriteFile(tags, []byte(labTags("")), 0o600); err != nil {
		t.Fatal(err)
	}
	tp := newTopoClients(t, "enforce", coverageClients(tags))
	inTag := netip.MustParseAddr("203.0.113.5")
	inTag6 := netip.MustParseAddr("2001:db8:cd::5")
	outside := netip.MustParseAddr("203.0.113.7")

	t.Run("validate reports it", func(t *testing.T) {
		out, err := tp.gw.Run(binary, "validate", "--config", tp.cfgPath)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if want := "static hub: 2 IPv4 addresses and 1 IPv6 /64 in 2 prefixes on tcp/8883, without DNS: AzureIoTHub.EastUS from " + tags + " (change 7)"; !strings.Contains(out, want) {
			t.Errorf("validate lacks %q:\n%s", want, out)
		}
	})
	t.Run("open on its port without DNS", func(t *testing.T) {
		for _, a := range []netip.Addr{inTag, inTag6} {
			c, err := connect(tp.devA, a, 8883, 2*time.Second)
			if err != nil {
				t.Fatalf("A to %s port 8883 (static, no DNS): %v", a, err)
			}
			c.Close()
		}
	})
	t.Run("closed elsewhere", func(t *testing.T) {
		for _, c := range []struct {
			what string
			addr netip.Addr
			port int
		}{
			{"another port of the prefix", inTag, 8443},
			{"the rule's port outside the prefix", outside, 8883},
		} {
			if _, err := connect(tp.devA, c.addr, c.port, 500*time.Millisecond); !dropped(err) {
				t.Errorf("%s (%s:%d): %v, want a drop", c.what, c.addr, c.port, err)
			}
		}
		if _, err := connect(tp.devB, inTag, 8883, 500*time.Millisecond); !dropped(err) {
			t.Errorf("B (another group) to %s:8883: %v, want a drop", inTag, err)
		}
	})
	t.Run("SIGHUP loads a fresh tags file", func(t *testing.T) {
		if err := os.WriteFile(tags, []byte(labTags(`, "203.0.113.7/32"`)), 0o600); err != nil {
			t.Fatal(err)
		}
		before := strings.Count(tp.stderr.String(), "msg=reloaded")
		if err := tp.proc.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for strings.Count(tp.stderr.String(), "msg=reloaded") == before {
			if time.Now().After(deadline) {
				t.Fatalf("no reload logged within 5s:\n%s", tp.stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		c, err := connect(tp.devA, outside, 8883, 2*time.Second)
		if err != nil {
			t.Fatalf("A to %s:8883 after the tag gained it: %v", outside, err)
		}
		c.Close()
		if _, err := connect(tp.devA, outside, 8443, 500*time.Millisecond); !dropped(err) {
			t.Errorf("%s:8443 after reload: %v, want a drop", outside, err)
		}
	})
}
