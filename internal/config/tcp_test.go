package config

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestTCPListenFields(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want Listen // TCP fields only
		err  string // "" for valid
	}{
		{name: "defaults", want: Listen{TCPMaxConns: DefaultTCPMaxConns, TCPMaxConnsPerClient: DefaultTCPMaxConnsPerClient,
			TCPIdleTimeout: DefaultTCPIdleTimeout, TCPReadTimeout: DefaultTCPReadTimeout}},
		{name: "set", yaml: "listen:\n  tcp_max_conns: 100\n  tcp_max_conns_per_client: 4\n  tcp_idle_timeout: 3s\n  tcp_read_timeout: 500ms\n",
			want: Listen{TCPMaxConns: 100, TCPMaxConnsPerClient: 4, TCPIdleTimeout: 3 * time.Second, TCPReadTimeout: 500 * time.Millisecond}},
		{name: "max conns negative", yaml: "listen:\n  tcp_max_conns: -1\n",
			err: "t.yaml:11:18: listen.tcp_max_conns: -1 is outside 1..65536"},
		{name: "max conns too many", yaml: "listen:\n  tcp_max_conns: 100000\n",
			err: "t.yaml:11:18: listen.tcp_max_conns: 100000 is outside 1..65536"},
		{name: "per client above all", yaml: "listen:\n  tcp_max_conns: 10\n  tcp_max_conns_per_client: 11\n",
			err: "t.yaml:12:29: listen.tcp_max_conns_per_client: 11 is above tcp_max_conns 10"},
		{name: "per client negative", yaml: "listen:\n  tcp_max_conns_per_client: -3\n",
			err: "listen.tcp_max_conns_per_client: -3 is outside 1..65536"},
		{name: "idle too short", yaml: "listen:\n  tcp_idle_timeout: 1ms\n",
			err: "t.yaml:11:21: listen.tcp_idle_timeout: 1ms is outside 10ms..1h"},
		{name: "read too long", yaml: "listen:\n  tcp_read_timeout: 2m\n",
			err: "t.yaml:11:21: listen.tcp_read_timeout: 2m0s is outside 10ms..1m"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("t.yaml", []byte(minimal+tc.yaml))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := Listen{TCPMaxConns: c.Listen.TCPMaxConns, TCPMaxConnsPerClient: c.Listen.TCPMaxConnsPerClient,
				TCPIdleTimeout: c.Listen.TCPIdleTimeout, TCPReadTimeout: c.Listen.TCPReadTimeout}
			if got.TCPMaxConns != tc.want.TCPMaxConns || got.TCPMaxConnsPerClient != tc.want.TCPMaxConnsPerClient ||
				got.TCPIdleTimeout != tc.want.TCPIdleTimeout || got.TCPReadTimeout != tc.want.TCPReadTimeout {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			var b bytes.Buffer
			if err := c.WriteEffective(&b); err != nil {
				t.Fatal(err)
			}
			want := "dns/tcp:       " // the line is there, aligned
			if !strings.Contains(b.String(), want) {
				t.Errorf("effective config lacks the tcp line:\n%s", b.String())
			}
		})
	}
}
