package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fqdngate/fqdngate/internal/dnsproxy"
)

// registerAnswers adds the counters of what answers may hold: stale
// answers served, internal addresses withheld.
func (m *Metrics) registerAnswers() {
	m.stale = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fqdngate_dns_stale_answers_total", Help: "Expired cached answers served, and installed, because no upstream answered (serve_stale).",
	})
	m.withheld = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fqdngate_dns_private_addresses_withheld_total", Help: "Private, loopback, link-local and other internal addresses taken out of answers (private_answers: withhold).",
	})
	m.Registry.MustRegister(m.stale, m.withheld)
}

func (m *Metrics) answers(o dnsproxy.Outcome) {
	if o.Stale {
		m.stale.Inc()
	}
	if o.Withheld > 0 {
		m.withheld.Add(float64(o.Withheld))
	}
}
