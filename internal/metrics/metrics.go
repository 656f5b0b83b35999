// Package metrics exposes fqdngate's state to Prometheus, every name
// prefixed fqdngate_. Counters the handler and the pool see are kept here;
// the ledger, the kernel and the drop attribution are read at scrape time
// from the parts that own them.
package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fqdngate/fqdngate/internal/clientlimit"
	"github.com/fqdngate/fqdngate/internal/dnsproxy"
	"github.com/fqdngate/fqdngate/internal/enforce"
	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/monitor"
	"github.com/fqdngate/fqdngate/internal/upstream"
)

// Sources are read at every scrape.
type Sources struct {
	Ledger func() ledger.Stats
	// Drops is the attribution's counts (monitor.Counts); nil without it.
	Drops func() (drops, wouldDrops map[monitor.Reason]uint64, lost, overruns uint64)
	// Kernel is the table's named counters; nil with backend none.
	Kernel func() (enforce.Counters, error)
	// CacheLen is the number of answers cached.
	CacheLen func() int
	// Elements is the number of set elements; nil with backend none.
	Elements func() (int, error)
	// Writer is the nftables writer's work; nil with backend none.
	Writer func() enforce.WriterStats
	// QueueDrops is the UDP queries dropped at a full work queue.
	QueueDrops func() uint64
	// LogsSuppressed is the log lines left out for their budget: of
	// single queries (denied, failed) and of drops.
	LogsSuppressed func() (queries, drops uint64)
	// RateLimited is the queries refused per group and limit
	// (clientlimit.Limiter.Refused), LimitedClients the clients tracked.
	RateLimited    func() map[string]map[clientlimit.Limit]uint64
	LimitedClients func() int
	// RevokeDropped is the evicted elements not removed at once.
	RevokeDropped func() uint64
	// Tamper is the table watch's findings; nil with backend none.
	Tamper func() enforce.TamperStats
	// TCP is the TCP listeners' connections; nil without them.
	TCP func() dnsproxy.TCPStats
}

// Metrics is the registry and the counters fed from the query path.
type Metrics struct {
	Registry *prometheus.Registry

	queries     *prometheus.CounterVec
	cache       *prometheus.CounterVec
	upstreamRTT *prometheus.HistogramVec
	upstreamErr *prometheus.CounterVec
	install     prometheus.Histogram
	// perUpstream caches each upstream's histogram and counter: the label
	// lookup hashed the labels on every exchange.
	perUpstream sync.Map // upstream label → upstreamMetrics
	upstreamUp  *prometheus.GaugeVec
	skipped     *prometheus.CounterVec
	// perQuery caches the counters of (decision, group) pairs, bounded by
	// the configuration's groups times the decisions.
	perQuery  sync.Map // queryLabels → prometheus.Counter
	hit, miss prometheus.Counter
	// stale and withheld count serve-stale answers and the internal
	// addresses taken out of answers (private_answers).
	stale, withheld prometheus.Counter
}

type upstreamMetrics struct {
	rtt prometheus.Observer
	err prometheus.Counter
}

type queryLabels struct{ decision, group string }

// latency buckets from 50 µs to 2.5 s: the install path lives in the
// tens of microseconds, upstreams in milliseconds.
var buckets = prometheus.ExponentialBuckets(50e-6, 2.5, 13)

// New registers fqdngate's metrics, and the Go and process collectors.
func New(src Sources) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fqdngate_dns_queries_total", Help: "DNS queries by decision (allowed, denied, would-deny, refused, malformed, busy, upstream-fail, enforce-fail, cname-not-via, rate-limited, withdrawn) and client group.",
		}, []string{"decision", "group"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fqdngate_dns_cache_total", Help: "Answers by origin: hit (from the cache) or miss (from an upstream).",
		}, []string{"result"}),
		upstreamRTT: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fqdngate_upstream_duration_seconds", Help: "Time of one exchange with one upstream, failed ones included.", Buckets: buckets,
		}, []string{"upstream"}),
		upstreamErr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fqdngate_upstream_errors_total", Help: "Failed exchanges by upstream (timeouts, mismatched replies).",
		}, []string{"upstream"}),
		install: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fqdngate_rule_install_duration_seconds", Help: "From the upstream's answer to the kernel's acknowledgement of its elements.",
			// Fine buckets: this is the latency the design is about.
			Buckets: prometheus.ExponentialBucketsRange(10e-6, 1, 41),
		}),
	}
	m.upstreamUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fqdngate_upstream_up", Help: "1 while the upstream is in service, 0 while it is marked down (skipped, probed).",
	}, []string{"upstream"})
	m.skipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fqdngate_upstream_replies_skipped_total", Help: "Replies read from an upstream's socket and not believed, by reason (id, qr, opcode, rcode, question, case, malformed): spoofed, late or broken.",
	}, []string{"upstream", "reason"})
	m.Registry.MustRegister(m.upstreamUp, m.skipped)
	m.Registry.MustRegister(m.queries, m.cache, m.upstreamRTT, m.upstreamErr, m.install,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&scraped{src: src}, tcpCollector{src.TCP})
	m.hit, m.miss = m.cache.WithLabelValues("hit"), m.cache.WithLabelValues("miss")
	m.registerAnswers()
	return m
}

// Query implements dnsproxy.Observer.
func (m *Metrics) Query(o dnsproxy.Outcome) {
	k := queryLabels{o.Decision, o.Group}
	c, ok := m.perQuery.Load(k)
	if !ok {
		c, _ = m.perQuery.LoadOrStore(k, m.queries.WithLabelValues(o.Decision, o.Group))
	}
	c.(prometheus.Counter).Inc()
	switch {
	case o.Cached:
		m.hit.Inc()
	case o.Decision == dnsproxy.DecisionAllowed || o.Decision == dnsproxy.DecisionWouldDeny:
		m.miss.Inc()
	}
	if o.Install > 0 {
		m.install.Observe(o.Install.Seconds())
	}
	m.answers(o)
}

// Upstream is the pool's observer (upstream.Observer). The labels are
// the configuration's upstreams: bounded by the file.
func (m *Metrics) Upstream() upstream.Observer { return upstreamObserver{m} }

type upstreamObserver struct{ m *Metrics }

func (o upstreamObserver) Exchange(up string, rtt time.Duration, err error) {
	o.m.exchange(up, rtt, err)
}

func (o upstreamObserver) Skipped(up, reason string) { o.m.skipped.WithLabelValues(up, reason).Inc() }

func (o upstreamObserver) Health(up string, ok bool) {
	v := 0.0
	if ok {
		v = 1
	}
	for _, r := range upstream.SkipReasons { // zeros, for alerts on rate()
		o.m.skipped.WithLabelValues(up, r)
	}
	o.m.upstreamUp.WithLabelValues(up).Set(v)
}

func (m *Metrics) exchange(up string, rtt time.Duration, err error) {
	v, ok := m.perUpstream.Load(up)
	if !ok {
		v, _ = m.perUpstream.LoadOrStore(up, upstreamMetrics{
			rtt: m.upstreamRTT.WithLabelValues(up), err: m.upstreamErr.WithLabelValues(up)})
	}
	um := v.(upstreamMetrics)
	um.rtt.Observe(rtt.Seconds())
	if err != nil {
		um.err.Inc()
	}
}

// scraped reads the other parts' state at scrape time.
type scraped struct{ src Sources }

var (
	descLedger     = prometheus.NewDesc("fqdngate_ledger_entries", "Addresses told to clients and remembered (live, and expired ones kept for explanations).", nil, nil)
	descLearnt     = prometheus.NewDesc("fqdngate_ledger_learnt_total", "Ledger entries created.", nil, nil)
	descEvicted    = prometheus.NewDesc("fqdngate_ledger_evictions_total", "Entries evicted by a cap: per_name (max_addrs_per_name), per_client (max_entries_per_client: the client's own) or global (max_entries: an expired entry, else the biggest client's).", []string{"cap"}, nil)
	descCacheLen   = prometheus.NewDesc("fqdngate_dns_cache_entries", "Answers held in the cache.", nil, nil)
	descElements   = prometheus.NewDesc("fqdngate_set_elements", "Unexpired elements fqdngate has installed in its nftables sets.", nil, nil)
	descDrops      = prometheus.NewDesc("fqdngate_drops_total", "Dropped packets by attributed reason.", []string{"reason"}, nil)
	descWould      = prometheus.NewDesc("fqdngate_would_drops_total", "Packets observe mode let through that enforce mode would drop, by reason.", []string{"reason"}, nil)
	descLost       = prometheus.NewDesc("fqdngate_drop_events_unattributed_total", "Logged drops not attributed because the attribution queue was full (they are in the kernel counters).", nil, nil)
	descOverruns   = prometheus.NewDesc("fqdngate_nflog_overruns_total", "Times the kernel could not deliver drop logs (socket buffer overrun).", nil, nil)
	descKernel     = prometheus.NewDesc("fqdngate_kernel_packets_total", "fqdngate's nftables counters: drops, would_drops, dot_drops, dns_redirects.", []string{"counter"}, nil)
	descKernelFail = prometheus.NewDesc("fqdngate_kernel_counters_up", "1 when the kernel counters could be read.", nil, nil)
	descWriterReq  = prometheus.NewDesc("fqdngate_nft_requests_total", "Answers and revocations the nftables writer handled.", nil, nil)
	descWriterTx   = prometheus.NewDesc("fqdngate_nft_transactions_total", "Netlink transactions the nftables writer committed (requests per transaction: how many answers share one).", nil, nil)
	descQueueDrops = prometheus.NewDesc("fqdngate_dns_udp_queue_drops_total", "UDP queries dropped because every worker was busy and the queue full (clients retry).", nil, nil)
	descWriterEl   = prometheus.NewDesc("fqdngate_nft_element_writes_total", "Set element adds and deletes in committed transactions.", nil, nil)
	descSuppressed = prometheus.NewDesc("fqdngate_log_lines_suppressed_total", "Log lines left out to keep the log's budget (50 a second, bursts of 200), by source: query (denied and failed queries) or drop; the counters by decision and reason are complete.", []string{"source"}, nil)
	descLimited    = prometheus.NewDesc("fqdngate_dns_rate_limited_total", "Queries refused for a client's max_qps (limit qps) or max_inflight (limit inflight), by client group.", []string{"group", "limit"}, nil)
	descLimClients = prometheus.NewDesc("fqdngate_dns_rate_limit_clients", "Clients the rate limiter tracks (at most 65536, idle ones forgotten after a minute; beyond, new ones share their group's overflow bucket).", nil, nil)
	descRevokeDrop = prometheus.NewDesc("fqdngate_enforce_revoke_dropped_total", "Elements of evicted entries not removed from the kernel at once (writer queue full); they expire on their own.", nil, nil)
	descTampered   = prometheus.NewDesc("fqdngate_enforce_table_tampering_total", "Changes by another process to fqdngate's nftables table found (by event or periodic check), and event overruns.", nil, nil)
	descRestored   = prometheus.NewDesc("fqdngate_enforce_table_restored_total", "Times fqdngate's nftables table was rebuilt after it was lost or changed by another process.", nil, nil)
	descRestoreErr = prometheus.NewDesc("fqdngate_enforce_table_restore_failures_total", "Rebuilds of a lost table that failed (retried with backoff).", nil, nil)
	descTableLost  = prometheus.NewDesc("fqdngate_enforce_table_lost", "1 while the table is lost and answers that need an address are withheld (SERVFAIL).", nil, nil)
	descCommit     = prometheus.NewDesc("fqdngate_nft_commit_duration_seconds", "How long the kernel took to take each netlink transaction of the writer: the kernel's part of answer to kernel.", nil, nil)
)

func (s *scraped) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCacheLen, descLedger, descLearnt, descEvicted, descElements, descDrops, descWould, descLost, descOverruns, descKernel, descKernelFail, descWriterReq, descWriterTx, descWriterEl, descCommit, descQueueDrops, descSuppressed, descLimited, descLimClients, descRevokeDrop} {
		ch <- d
	}
	// The table watch's (enforce/watch.go).
	for _, d := range []*prometheus.Desc{descTampered, descRestored, descRestoreErr, descTableLost} {
		ch <- d
	}
}

func (s *scraped) Collect(ch chan<- prometheus.Metric) {
	if s.src.Ledger != nil {
		st := s.src.Ledger()
		ch <- prometheus.MustNewConstMetric(descLedger, prometheus.GaugeValue, float64(st.Entries))
		ch <- prometheus.MustNewConstMetric(descLearnt, prometheus.CounterValue, float64(st.Learnt))
		ch <- prometheus.MustNewConstMetric(descEvicted, prometheus.CounterValue, float64(st.EvictedPerName), "per_name")
		ch <- prometheus.MustNewConstMetric(descEvicted, prometheus.CounterValue, float64(st.EvictedPerClient), "per_client")
		ch <- prometheus.MustNewConstMetric(descEvicted, prometheus.CounterValue, float64(st.EvictedGlobal), "global")
	}
	if s.src.CacheLen != nil {
		ch <- prometheus.MustNewConstMetric(descCacheLen, prometheus.GaugeValue, float64(s.src.CacheLen()))
	}
	if s.src.RateLimited != nil {
		for group, by := range s.src.RateLimited() {
			for limit, n := range by {
				ch <- prometheus.MustNewConstMetric(descLimited, prometheus.CounterValue, float64(n), group, string(limit))
			}
		}
	}
	if s.src.LimitedClients != nil {
		ch <- prometheus.MustNewConstMetric(descLimClients, prometheus.GaugeValue, float64(s.src.LimitedClients()))
	}
	if s.src.RevokeDropped != nil {
		ch <- prometheus.MustNewConstMetric(descRevokeDrop, prometheus.CounterValue, float64(s.src.RevokeDropped()))
	}
	if s.src.QueueDrops != nil {
		ch <- prometheus.MustNewConstMetric(descQueueDrops, prometheus.CounterValue, float64(s.src.QueueDrops()))
	}
	if s.src.LogsSuppressed != nil {
		q, d := s.src.LogsSuppressed()
		ch <- prometheus.MustNewConstMetric(descSuppressed, prometheus.CounterValue, float64(q), "query")
		ch <- prometheus.MustNewConstMetric(descSuppressed, prometheus.CounterValue, float64(d), "drop")
	}
	if s.src.Writer != nil {
		w := s.src.Writer()
		ch <- prometheus.MustNewConstMetric(descWriterReq, prometheus.CounterValue, float64(w.Requests))
		ch <- prometheus.MustNewConstMetric(descWriterTx, prometheus.CounterValue, float64(w.Transactions))
		ch <- prometheus.MustNewConstMetric(descWriterEl, prometheus.CounterValue, float64(w.Elements))
		if h := w.Commit; len(h.Bounds) > 0 {
			buckets, cum := make(map[float64]uint64, len(h.Bounds)), uint64(0)
			for i, b := range h.Bounds {
				cum += h.Counts[i]
				buckets[b] = cum
			}
			ch <- prometheus.MustNewConstHistogram(descCommit, h.Count, h.Sum, buckets)
		}
	}
	if s.src.Tamper != nil {
		st := s.src.Tamper()
		lost := 0.0
		if st.Lost {
			lost = 1
		}
		ch <- prometheus.MustNewConstMetric(descTampered, prometheus.CounterValue, float64(st.Detections))
		ch <- prometheus.MustNewConstMetric(descRestored, prometheus.CounterValue, float64(st.Restored))
		ch <- prometheus.MustNewConstMetric(descRestoreErr, prometheus.CounterValue, float64(st.RestoreFailures))
		ch <- prometheus.MustNewConstMetric(descTableLost, prometheus.GaugeValue, lost)
	}
	if s.src.Elements != nil {
		if n, err := s.src.Elements(); err == nil {
			ch <- prometheus.MustNewConstMetric(descElements, prometheus.GaugeValue, float64(n))
		}
	}
	if s.src.Drops != nil {
		drops, would, lost, overruns := s.src.Drops()
		for _, r := range monitor.Reasons {
			ch <- prometheus.MustNewConstMetric(descDrops, prometheus.CounterValue, float64(drops[r]), string(r))
			ch <- prometheus.MustNewConstMetric(descWould, prometheus.CounterValue, float64(would[r]), string(r))
		}
		ch <- prometheus.MustNewConstMetric(descLost, prometheus.CounterValue, float64(lost))
		ch <- prometheus.MustNewConstMetric(descOverruns, prometheus.CounterValue, float64(overruns))
	}
	if s.src.Kernel != nil {
		c, err := s.src.Kernel()
		up := 1.0
		if err != nil {
			up = 0
		} else {
			for name, v := range map[string]uint64{"drops": c.Drops, "would_drops": c.WouldDrops, "dot_drops": c.DoTDrops, "dns_redirects": c.DNSRedirects} {
				ch <- prometheus.MustNewConstMetric(descKernel, prometheus.CounterValue, float64(v), name)
			}
		}
		ch <- prometheus.MustNewConstMetric(descKernelFail, prometheus.GaugeValue, up)
	}
}
