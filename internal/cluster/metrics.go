package cluster

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	published      prometheus.Counter
	messages       prometheus.Counter
	publishSkipped prometheus.Counter
	publishDropped *prometheus.CounterVec
	applied        prometheus.Counter
	refused        *prometheus.CounterVec
	lag            prometheus.Histogram
	caughtUp       prometheus.Gauge
	dropsPublished prometheus.Counter
	dropsDropped   prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "fqdngate_cluster_published_total",
			Help: "Ledger entries of this node stored in its stream."}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{Name: "fqdngate_cluster_messages_published_total",
			Help: "JetStream messages this node stored: its published entries, in batches."}),
		publishSkipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "fqdngate_cluster_publish_skipped_total",
			Help: "Answers not published because an entry was published with at least their expiry already."}),
		publishDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fqdngate_cluster_publish_dropped_total",
			Help: "Ledger entries of this node not published, by reason: queue-full, unreachable, timeout, error."}, []string{"reason"}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{Name: "fqdngate_cluster_applied_total",
			Help: "Other nodes' entries (and this node's own, read back at start) installed in the kernel and ledger."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fqdngate_cluster_refused_total",
			Help: "Records read and not applied, by reason: expired, future, policy, kernel, malformed, wrong-node, too-many-nodes."}, []string{"reason"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fqdngate_cluster_replication_lag_seconds",
			Help:    "From the answering node recording an answer to its element in this node's kernel (after the catch-up).",
			Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10}}),
		caughtUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fqdngate_cluster_caught_up",
			Help: "1 once this node has read back its own stream and its peers' (or given up on unreachable ones)."}),
		dropsPublished: prometheus.NewCounter(prometheus.CounterOpts{Name: "fqdngate_cluster_drops_published_total",
			Help: "Explained drops sent on this node's drops subject."}),
		dropsDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "fqdngate_cluster_drops_dropped_total",
			Help: "Explained drops not sent (NATS away and its buffer full)."}),
	}
}

var descPeerUp = prometheus.NewDesc("fqdngate_cluster_peer_up", "1 while the connection to a peer's server (or the shared NATS system) is up.", []string{"peer"}, nil)

// Collectors are the node's metrics, for the gateway's registry.
func (n *Node) Collectors() []prometheus.Collector {
	m := n.m
	return []prometheus.Collector{m.published, m.messages, m.publishSkipped, m.publishDropped, m.applied, m.refused, m.lag, m.caughtUp,
		m.dropsPublished, m.dropsDropped, peerCollector{n}}
}

type peerCollector struct{ n *Node }

func (p peerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descPeerUp }
func (p peerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range p.n.peerStates() {
		v := 0.0
		if s.Up {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descPeerUp, prometheus.GaugeValue, v, s.Name)
	}
}
