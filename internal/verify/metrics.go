package verify

import "github.com/prometheus/client_golang/prometheus"

var (
	descFlows = prometheus.NewDesc("fqdngate_verify_flows_total",
		"New flows on verified ports judged by the name in them: passed (answered name, or observe mode), unverified (a rule with verify: false), dropped (reset; the reason is in fqdngate_drops_total).",
		[]string{"verdict"}, nil)
	descErrors = prometheus.NewDesc("fqdngate_verify_errors_total",
		"Verdicts the kernel refused and queue read errors (the packets concerned are dropped by the kernel: fail closed).", nil, nil)
	descHeld = prometheus.NewDesc("fqdngate_verify_held_flows",
		"Flows whose first packets are held for a verdict.", nil, nil)
	descStarts = prometheus.NewDesc("fqdngate_verify_pending_flows",
		"Flows whose SYN was seen and whose first bytes have not come yet.", nil, nil)
	descFull = prometheus.NewDesc("fqdngate_verify_no_room_total",
		"Packets of new flows dropped unjudged because the flows pending or held reached their bound, in all or for one client (TCP sends them again).", nil, nil)
)

// Collector exports the queue's counters.
func (q *Queue) Collector() prometheus.Collector { return collector{q} }

type collector struct{ q *Queue }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descFlows
	ch <- descErrors
	ch <- descHeld
	ch <- descStarts
	ch <- descFull
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.q.Stats()
	ch <- prometheus.MustNewConstMetric(descFlows, prometheus.CounterValue, float64(s.Passed), "passed")
	ch <- prometheus.MustNewConstMetric(descFlows, prometheus.CounterValue, float64(s.Unverified), "unverified")
	ch <- prometheus.MustNewConstMetric(descFlows, prometheus.CounterValue, float64(s.Dropped), "dropped")
	ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(s.Errors))
	held, starts := c.q.held()
	ch <- prometheus.MustNewConstMetric(descHeld, prometheus.GaugeValue, float64(held))
	ch <- prometheus.MustNewConstMetric(descStarts, prometheus.GaugeValue, float64(starts))
	ch <- prometheus.MustNewConstMetric(descFull, prometheus.CounterValue, float64(c.q.full.Load()))
}
