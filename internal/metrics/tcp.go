package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fqdngate/fqdngate/internal/dnsproxy"
)

var (
	descTCPOpen     = prometheus.NewDesc("fqdngate_dns_tcp_connections", "DNS-over-TCP connections open.", nil, nil)
	descTCPAccepted = prometheus.NewDesc("fqdngate_dns_tcp_accepted_total", "DNS-over-TCP connections accepted and served.", nil, nil)
	descTCPRefused  = prometheus.NewDesc("fqdngate_dns_tcp_refused_total", "DNS-over-TCP connections closed at accept, by reason: not_client (source in no client group), per_client_cap (listen.tcp_max_conns_per_client), global_cap (listen.tcp_max_conns).", []string{"reason"}, nil)
	descTCPTimeouts = prometheus.NewDesc("fqdngate_dns_tcp_timeouts_total", "DNS-over-TCP connections closed by a timeout: idle (no query within listen.tcp_idle_timeout), read (a query not whole within listen.tcp_read_timeout of its first byte), write (a reply not taken).", []string{"phase"}, nil)
)

// tcpCollector reads the TCP listeners' counts at scrape time.
type tcpCollector struct{ stats func() dnsproxy.TCPStats }

func (c tcpCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTCPOpen, descTCPAccepted, descTCPRefused, descTCPTimeouts} {
		ch <- d
	}
}

func (c tcpCollector) Collect(ch chan<- prometheus.Metric) {
	if c.stats == nil {
		return
	}
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(descTCPOpen, prometheus.GaugeValue, float64(s.Open))
	ch <- prometheus.MustNewConstMetric(descTCPAccepted, prometheus.CounterValue, float64(s.Accepted))
	for reason, v := range map[string]uint64{"not_client": s.RefusedNotClient, "per_client_cap": s.RefusedPerClient, "global_cap": s.RefusedGlobal} {
		ch <- prometheus.MustNewConstMetric(descTCPRefused, prometheus.CounterValue, float64(v), reason)
	}
	for phase, v := range map[string]uint64{"idle": s.TimeoutIdle, "read": s.TimeoutRead, "write": s.TimeoutWrite} {
		ch <- prometheus.MustNewConstMetric(descTCPTimeouts, prometheus.CounterValue, float64(v), phase)
	}
}
