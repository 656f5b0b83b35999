package feeds

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the feeds' and pushes' counters. Labels are bounded: feed
// names, HTTP status codes, and push targets as "type-index" from the
// configuration.
type Metrics struct {
	requests *prometheus.CounterVec
	batches  *prometheus.CounterVec
	entries  *prometheus.CounterVec
	errors   *prometheus.CounterVec
	overflow *prometheus.CounterVec
	lag      *prometheus.HistogramVec
	depth    *prometheus.GaugeVec
}

// NewMetrics makes the metrics; Collectors lists them for a registry.
func NewMetrics() *Metrics {
	return &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fqdngate_feed_requests_total", Help: "Pull feed requests by feed (ip, domain, checkpoint) and HTTP status.",
		}, []string{"feed", "status"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fqdngate_push_batches_total", Help: "Push requests sent to a firewall, by target and result (ok, error).",
		}, []string{"target", "result"}),
		entries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fqdngate_push_entries_total", Help: "Addresses a firewall acknowledged, by target.",
		}, []string{"target"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fqdngate_push_errors_total", Help: "Push failures by target and kind: network, auth (key refused), http, entry (the firewall refused one entry).",
		}, []string{"target", "kind"}),
		overflow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fqdngate_push_queue_overflow_total", Help: "Answers not queued for a firewall because its queue was full (sent at the next resync).",
		}, []string{"target"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fqdngate_push_lag_seconds", Help: "From an answer's release to the firewall's acknowledgement of it.",
			Buckets: prometheus.ExponentialBucketsRange(1e-3, 30, 24),
		}, []string{"target"}),
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fqdngate_push_queue_entries", Help: "Addresses waiting to be pushed, by target.",
		}, []string{"target"}),
	}
}

// Collectors are the metrics to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.batches, m.entries, m.errors, m.overflow, m.lag, m.depth}
}

func (m *Metrics) request(feed string, code int) {
	m.requests.WithLabelValues(feed, strconv.Itoa(code)).Inc()
}
