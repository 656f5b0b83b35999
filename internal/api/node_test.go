package api

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// TestEntryNode: in a cluster, the ledger and the explanation say which
// node answered; outside one the field is absent.
func TestEntryNode(t *testing.T) {
	h, led, _ := newAPI(t, true)
	now := time.Now()
	led.Record(now, ledger.Answer{Client: netip.MustParseAddr("192.0.2.10"), Group: "devices", Node: "gw2", Name: "hub.example.com",
		Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.9")}, Rules: []string{"web"},
		Ports: []policy.PortRange{{Proto: unix.IPPROTO_TCP, Lo: 443, Hi: 443}}, TTL: 20 * time.Second, Expires: now.Add(time.Minute)})
	tests := []struct {
		path, node string
	}{
		{"/api/v1/ledger?name=hub.example.com", "gw2"},
		{"/api/v1/ledger?name=www.example.com", ""},
		{"/api/v1/explain?addr=203.0.113.9&client=192.0.2.10", "gw2"},
		{"/api/v1/explain?addr=203.0.113.5&client=192.0.2.10", ""},
	}
	for _, tc := range tests {
		code, body := get(t, h, tc.path)
		var resp struct {
			Entries []map[string]any `json:"entries"`
			Node    *string          `json:"node"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &resp) != nil {
			t.Fatalf("%s: %d %s", tc.path, code, body)
		}
		node, present := "", false
		if resp.Node != nil {
			node, present = *resp.Node, true
		}
		if len(resp.Entries) == 1 {
			node, present = resp.Entries[0]["node"].(string)
		}
		if node != tc.node || present != (tc.node != "") {
			t.Errorf("%s: node %q (present %v), want %q\n%s", tc.path, node, present, tc.node, body)
		}
	}
}
