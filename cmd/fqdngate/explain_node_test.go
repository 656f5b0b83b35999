package main

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/monitor"
)

// TestExplainNode: an entry of a cluster says which node answered it.
func TestExplainNode(t *testing.T) {
	base := monitor.Explanation{Reason: monitor.Allowed, Client: netip.MustParseAddr("192.0.2.10"), Addr: netip.MustParseAddr("203.0.113.7"),
		Name: "www.example.com", Chain: []string{"edge.example.net"}, Rules: []string{"web"}, Ports: []string{"tcp/443"},
		TTL: 60, Expires: time.Unix(1_800_000_000, 0).UTC(), Message: "open"}
	tests := []struct {
		node, want string
	}{
		{"gw1", "  name:   www.example.com → edge.example.net (answered by gw1)\n"},
		{"", "  name:   www.example.com → edge.example.net\n"},
	}
	for _, tc := range tests {
		ex := base
		ex.Node = tc.node
		var b bytes.Buffer
		writeExplanation(&b, ex)
		if !strings.Contains(b.String(), tc.want) {
			t.Errorf("node %q:\n%s\nwant the line %q", tc.node, b.String(), tc.want)
		}
	}
}
