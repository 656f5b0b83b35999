package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/lab"
	"github.com/fqdngate/fqdngate/internal/lab/labtest"
)

// hostAddr is the host's own address on its uplink: the Arc or HCI server
// that is its own client (hook output).
const hostAddr = "198.51.100.1"

// TestHostMode: fqdngate on the host itself (hook output, scope global),
// its DNS on 127.0.0.1. The host's own programs reach what they resolved
// through it, on the rule's port only; an address nobody resolved is
// dropped and counted; DNS the host sends to another server is redirected
// to fqdngate, and a denied name asked that way never reaches the
// upstream; loopback and fqdngate's own upstream traffic pass.
func TestHostMode(t *testing.T) {
	labtest.Require(t, "ip", "nft", "sysctl")
	host, inet := labtest.NS(t, "host"), labtest.NS(t, "inet")
	must := func(_ string, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := lab.Veth(host, "eth0", inet, "eth0"); err != nil {
		t.Fatal(err)
	}
	must(host.Run("ip", "addr", "add", hostAddr+"/24", "dev", "eth0"))
	must(host.Run("ip", "route", "add", "default", "via", "198.51.100.2"))
	must(inet.Run("ip", "addr", "add", "198.51.100.2/24", "dev", "eth0"))
	must(inet.Run("ip", "addr", "add", upstreamAddr+"/32", "dev", "lo"))
	must(inet.Run("ip", "route", "add", "local", "203.0.113.0/24", "dev", "lo"))
	auth := startAuth(t, inet)
	for _, port := range []int{443, 8443} {
		startEcho(t, inet, port)
	}

	tp := &topo{t: t, gw: host, devA: host, inet: inet, auth: auth, probeDNS: "127.0.0.1",
		cfgPath: filepath.Join(t.TempDir(), "host.yaml")}
	cfg := fmt.Sprintf(`mode: enforce
listen:
  dns: ["127.0.0.1:53"]
upstreams: ["%s"]
enforcer:
  hook: output
  min_ttl: 0s
  grace: 1s
cache_size: 0
clients:
  - name: host
    cidrs: ["127.0.0.0/8", "%s/32"]
    rules:
      - name: web
        fqdn: ["www.example.com"]
        ports: ["tcp/443"]
state_dir: ""
`, upstreamAddr, hostAddr)
	if err := os.WriteFile(tp.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	tp.launch()

	addrs := tp.addrsOf(t, host, "www.example.com.", dns.TypeA, "127.0.0.1")
	if want := []netip.Addr{netip.MustParseAddr("203.0.113.5")}; len(addrs) != 1 || addrs[0] != want[0] {
		t.Fatalf("www.example.com = %v, want %v", addrs, want)
	}
	t.Run("resolved address reachable on the rule's port only", func(t *testing.T) {
		c, err := connect(host, addrs[0], 443, 2*time.Second)
		if err != nil {
			t.Fatalf("connect %v:443 after resolving: %v", addrs[0], err)
		}
		c.Close()
		before := tp.counter(t, "drops")
		if _, err := connect(host, addrs[0], 8443, dropWait); !dropped(err) {
			t.Fatalf("connect %v:8443: %v, want dropped", addrs[0], err)
		}
		if after := tp.counter(t, "drops"); after <= before {
			t.Errorf("drops counter %d → %d, want it to grow", before, after)
		}
	})
	t.Run("address never resolved is dropped", func(t *testing.T) {
		if _, err := connect(host, netip.MustParseAddr("203.0.113.200"), 443, dropWait); !dropped(err) {
			t.Fatalf("hard-coded address: %v, want dropped", err)
		}
	})
	t.Run("DNS to another server is redirected; a denied name never leaves", func(t *testing.T) {
		before := tp.counter(t, "dns_redirects")
		r, err := tp.resolve(host, "evil.example.com.", dns.TypeA, otherDNS)
		if err != nil {
			t.Fatalf("query to %s: %v (nothing listens there: only the redirect can answer)", otherDNS, err)
		}
		if r.Rcode != dns.RcodeNameError {
			t.Fatalf("denied name through the redirect: %s, want NXDOMAIN from fqdngate", dns.RcodeToString[r.Rcode])
		}
		if n := auth.count("evil.example.com."); n != 0 {
			t.Errorf("the upstream saw the denied name %d times", n)
		}
		if after := tp.counter(t, "dns_redirects"); after <= before {
			t.Errorf("dns_redirects %d → %d", before, after)
		}
	})
	t.Run("loopback is not filtered", func(t *testing.T) {
		var ln net.Listener
		if err := host.Do(func() error {
			var err error
			ln, err = net.Listen("tcp", "127.0.0.1:0")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				c.Close()
			}
		}()
		err := host.Do(func() error {
			c, err := net.DialTimeout("tcp", ln.Addr().String(), dropWait)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err != nil {
			t.Fatalf("loopback connection: %v", err)
		}
	})
}
