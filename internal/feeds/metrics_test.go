package feeds

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// The feeds' metrics follow Prometheus' naming rules and fqdngate's
// prefix.
func TestMetricNames(t *testing.T) {
	m := NewMetrics()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.Collectors()...)
	m.request(FeedIP, 200)
	for _, l := range []string{"panos-0"} {
		m.batches.WithLabelValues(l, "ok").Inc()
		m.entries.WithLabelValues(l).Inc()
		m.errors.WithLabelValues(l, "auth").Inc()
		m.overflow.WithLabelValues(l).Inc()
		m.lag.WithLabelValues(l).Observe(0.01)
		m.depth.WithLabelValues(l).Set(1)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) != 7 {
		t.Errorf("%d families, want 7", len(families))
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "fqdngate_") {
			t.Errorf("%s lacks the prefix", f.GetName())
		}
	}
}
