package metrics

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/fqdngate/fqdngate/internal/dnsproxy"
	"github.com/fqdngate/fqdngate/internal/enforce"
	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/monitor"
	"github.com/fqdngate/fqdngate/internal/upstream"
)

func fullSources() Sources {
	return Sources{
		Ledger: func() ledger.Stats { return ledger.Stats{Entries: 3, Learnt: 5, EvictedPerName: 1} },
		Drops: func() (map[monitor.Reason]uint64, map[monitor.Reason]uint64, uint64, uint64) {
			return map[monitor.Reason]uint64{monitor.Expired: 2}, map[monitor.Reason]uint64{}, 0, 0
		},
		Kernel:   func() (enforce.Counters, error) { return enforce.Counters{Drops: 2}, nil },
		CacheLen: func() int { return 7 },
		Elements: func() (int, error) { return 4, nil },
		Writer: func() enforce.WriterStats {
			return enforce.WriterStats{Requests: 6, Transactions: 2, Elements: 9,
				Commit: enforce.Histogram{Bounds: []float64{1e-5, 1e-4, 1e-3}, Counts: []uint64{0, 1, 1}, Count: 2, Sum: 0.0009}}
		},
		QueueDrops: func() uint64 { return 0 },
	}
}

// Every fqdngate metric follows Prometheus' naming rules and carries the
// prefix the README documents.
func TestMetricNames(t *testing.T) {
	m := New(fullSources())
	m.Query(dnsproxy.Outcome{Decision: dnsproxy.DecisionAllowed, Group: "devices", Install: 40 * time.Microsecond})
	m.Upstream().Exchange("198.51.100.53:53", time.Millisecond, nil)
	m.Upstream().Health("198.51.100.53:53", true)
	m.Upstream().Skipped("198.51.100.53:53", upstream.SkipID)
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "fqdngate_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
	ours := 0
	for _, f := range families {
		name := f.GetName()
		if strings.HasPrefix(name, "fqdngate_") {
			ours++
		} else if !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("metric %s has neither the fqdngate_ prefix nor a Go or process collector's", name)
		}
	}
	if ours < 16 {
		t.Errorf("%d fqdngate_ metrics gathered, want all of them (at least 16)", ours)
	}
	for _, f := range families {
		if f.GetName() != "fqdngate_nft_commit_duration_seconds" {
			continue
		}
		h := f.GetMetric()[0].GetHistogram()
		if h.GetSampleCount() != 2 || len(h.GetBucket()) != 3 || h.GetBucket()[1].GetCumulativeCount() != 1 || h.GetBucket()[2].GetCumulativeCount() != 2 {
			t.Errorf("commit histogram %v, want 2 samples, cumulative 0, 1, 2", h)
		}
	}
}

// The counters looked up once per label set count every query and
// exchange into the right series, also for a label set seen for the first
// time by several goroutines at once.
func TestQueryAndUpstreamCounts(t *testing.T) {
	m := New(Sources{})
	up1, up2 := netip.MustParseAddrPort("198.51.100.53:53"), netip.MustParseAddrPort("[2001:db8::53]:53")
	obs := m.Upstream()
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 250 {
				m.Query(dnsproxy.Outcome{Decision: dnsproxy.DecisionAllowed, Group: "devices"})
				m.Query(dnsproxy.Outcome{Decision: dnsproxy.DecisionAllowed, Group: "devices", Cached: true})
				m.Query(dnsproxy.Outcome{Decision: dnsproxy.DecisionDenied, Group: "cameras"})
				obs.Exchange(up1.String(), time.Millisecond, nil)
				obs.Exchange(up2.String(), time.Millisecond, errors.New("timeout"))
				obs.Skipped(up2.String(), upstream.SkipQR)
			}
		}()
	}
	for range 4 {
		<-done
	}
	for _, tc := range []struct {
		what string
		got  float64
		want float64
	}{
		{"allowed devices", testutil.ToFloat64(m.queries.WithLabelValues("allowed", "devices")), 2000},
		{"denied cameras", testutil.ToFloat64(m.queries.WithLabelValues("denied", "cameras")), 1000},
		{"cache hits", testutil.ToFloat64(m.cache.WithLabelValues("hit")), 1000},
		{"cache misses", testutil.ToFloat64(m.cache.WithLabelValues("miss")), 1000},
		{"errors of " + up1.String(), testutil.ToFloat64(m.upstreamErr.WithLabelValues(up1.String())), 0},
		{"errors of " + up2.String(), testutil.ToFloat64(m.upstreamErr.WithLabelValues(up2.String())), 1000},
		{"skipped QR=0 of " + up2.String(), testutil.ToFloat64(m.skipped.WithLabelValues(up2.String(), upstream.SkipQR)), 1000},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.what, tc.got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(m.upstreamRTT); n != 2 {
		t.Errorf("%d upstream latency series, want 2", n)
	}
	obs.Health(up1.String(), false)
	if v := testutil.ToFloat64(m.upstreamUp.WithLabelValues(up1.String())); v != 0 {
		t.Errorf("%s up = %v after down", up1, v)
	}
	obs.Health(up1.String(), true)
	if v := testutil.ToFloat64(m.upstreamUp.WithLabelValues(up1.String())); v != 1 {
		t.Errorf("%s up = %v after up", up1, v)
	}
}
