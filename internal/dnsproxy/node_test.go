package dnsproxy

import (
	"context"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// TestAnswerNode: an answer is recorded with the node that gave it, and
// outside a cluster with none.
func TestAnswerNode(t *testing.T) {
	for _, node := range []string{"", "gw1"} {
		e := newEnv(t, func(o *Options) { o.Node = node })
		if resp := e.h.Resolve(context.Background(), devA, query("prod.update.sphere.azure.net.", dns.TypeA, false)); resp.Rcode != dns.RcodeSuccess {
			t.Fatalf("node %q: rcode %d", node, resp.Rcode)
		}
		entries := e.led.Lookup(netip.MustParseAddr("203.0.113.7"), devA)
		if len(entries) != 1 || entries[0].Node != node {
			t.Errorf("node %q: ledger %+v", node, entries)
		}
	}
}
