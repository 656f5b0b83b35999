package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/api"
)

// TestClusterStandbyServesWithoutVIP: a cluster node lists the VIP first
// in listen.dns and does not hold it (the standby). It starts all the
// same (the VIP is bound with IP_FREEBIND, no ip_nonlocal_bind), answers
// on its own address, and its clients' DNS to other servers is redirected
// (nft redirect) to the address of the interface it arrived on, which the
// node holds, instead of to the VIP, where nothing would answer. When
// keepalived's VIP arrives, queries to it are answered with nothing
// restarted.
func TestClusterStandbyServesWithoutVIP(t *testing.T) {
	const vip4, vip6 = "192.0.2.254", "2001:db8:1::fe"
	clients := defaultClients + "cluster:\n  name: site1\n  node: gw1\n  nats: embedded\n"
	listen := fmt.Sprintf(`["%s:53", "%s:53", "[%s]:53", "[%s]:53"]`, vip4, gwDevAddr4, vip6, gwDevAddr6)
	tp := newTopoListen(t, "enforce", clients, listen)

	out, err := tp.gw.Run("nft", "list", "chain", "inet", "fqdngate", "dns")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, "redirect to :53"); n != 4 || strings.Contains(out, "dnat") {
		t.Errorf("dns chain has %d redirects (want 4: udp and tcp of each family) or a dnat:\n%s", n, out)
	}
	// The fake internet owns 2001:db8:cd::/64 and nothing answers DNS
	// there: only the redirect can.
	const other6 = "2001:db8:cd::53"
	for _, q := range []struct {
		server string
		qtype  uint16
	}{{otherDNS, dns.TypeA}, {other6, dns.TypeAAAA}, {gwDevAddr4, dns.TypeA}} {
		if r, err := tp.resolve(tp.devA, "www.example.com.", q.qtype, q.server); err != nil || r.Rcode != dns.RcodeSuccess {
			t.Errorf("query to %s without the VIP: %v %v, want it answered", q.server, r, err)
		}
	}
	// The node's answers are its own: the ledger and explain say so.
	addr := tp.addrsOf(t, tp.devA, "www.example.com.", dns.TypeA, gwDevAddr4)[0]
	var led api.LedgerResponse
	tp.apiGet(t, "/api/v1/ledger?client="+devAAddr4+"&addr="+addr.String(), &led)
	if len(led.Entries) != 1 || led.Entries[0].Node != "gw1" {
		t.Errorf("ledger entries %+v, want one answered by gw1", led.Entries)
	}
	if out, err := tp.gw.Run(binary, "explain", addr.String(), "--client", devAAddr4, "--port", "tcp/443"); err != nil ||
		!strings.Contains(out, "  name:   www.example.com (answered by gw1)\n") {
		t.Errorf("fqdngate explain (%v):\n%s\nwant the name line to say answered by gw1", err, out)
	}
	// The status page shows the node's site: a node without routes has
	// caught up at once.
	var st struct {
		Ready   bool `json:"ready"`
		Cluster struct {
			Site, Node string
			CaughtUp   bool `json:"caught_up"`
		} `json:"cluster"`
	}
	tp.apiGet(t, "/api/v1/status", &st)
	if !st.Ready || st.Cluster.Site != "site1" || st.Cluster.Node != "gw1" || !st.Cluster.CaughtUp {
		t.Errorf("GET /api/v1/status: %+v, want ready, site1/gw1 caught up", st)
	}
	if r, err := tp.resolve(tp.devA, "www.example.com.", dns.TypeA, vip4); err == nil {
		t.Fatalf("the VIP answered before the node holds it: %v", r)
	}

	// Takeover: keepalived adds the VIPs.
	if _, err := tp.gw.Run("ip", "addr", "add", vip4+"/24", "dev", "br0"); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.gw.Run("ip", "addr", "add", vip6+"/64", "dev", "br0", "nodad"); err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		server string
		qtype  uint16
	}{{vip4, dns.TypeA}, {vip6, dns.TypeAAAA}, {otherDNS, dns.TypeA}, {other6, dns.TypeAAAA}} {
		if r, err := tp.resolve(tp.devA, "www.example.com.", q.qtype, q.server); err != nil || r.Rcode != dns.RcodeSuccess {
			t.Errorf("query to %s with the VIP: %v %v, want it answered", q.server, r, err)
		}
	}
}
