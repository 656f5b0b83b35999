package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fqdngate/fqdngate/internal/dnsproxy"
)

// The TCP listeners' counts reach the scrape under their documented
// names and labels, and pass promlint.
func TestTCPMetrics(t *testing.T) {
	src := fullSources()
	src.TCP = func() dnsproxy.TCPStats {
		return dnsproxy.TCPStats{Open: 3, Accepted: 9, RefusedNotClient: 1, RefusedPerClient: 2, RefusedGlobal: 4,
			TimeoutIdle: 5, TimeoutRead: 6, TimeoutWrite: 7}
	}
	m := New(src)
	want := `
# HELP fqdngate_dns_tcp_connections DNS-over-TCP connections open.
# TYPE fqdngate_dns_tcp_connections gauge
fqdngate_dns_tcp_connections 3
# HELP fqdngate_dns_tcp_accepted_total DNS-over-TCP connections accepted and served.
# TYPE fqdngate_dns_tcp_accepted_total counter
fqdngate_dns_tcp_accepted_total 9
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "fqdngate_dns_tcp_connections", "fqdngate_dns_tcp_accepted_total"); err != nil {
		t.Error(err)
	}
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				got[f.GetName()+"/"+l.GetValue()] = mt.GetCounter().GetValue()
			}
		}
	}
	for k, v := range map[string]float64{
		"fqdngate_dns_tcp_refused_total/not_client": 1, "fqdngate_dns_tcp_refused_total/per_client_cap": 2, "fqdngate_dns_tcp_refused_total/global_cap": 4,
		"fqdngate_dns_tcp_timeouts_total/idle": 5, "fqdngate_dns_tcp_timeouts_total/read": 6, "fqdngate_dns_tcp_timeouts_total/write": 7,
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if problems, err := testutil.GatherAndLint(m.Registry, "fqdngate_dns_tcp_connections", "fqdngate_dns_tcp_accepted_total", "fqdngate_dns_tcp_refused_total", "fqdngate_dns_tcp_timeouts_total"); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
