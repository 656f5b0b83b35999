package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fqdngate/fqdngate/internal/dnsproxy"
)

func TestAnswerCounters(t *testing.T) {
	tests := []struct {
		name            string
		outcomes        []dnsproxy.Outcome
		stale, withheld float64
	}{
		{"nothing", []dnsproxy.Outcome{{Decision: dnsproxy.DecisionAllowed}}, 0, 0},
		{"stale answers", []dnsproxy.Outcome{{Decision: dnsproxy.DecisionAllowed, Stale: true}, {Decision: dnsproxy.DecisionAllowed, Stale: true}}, 2, 0},
		{"withheld addresses, not answers", []dnsproxy.Outcome{{Decision: dnsproxy.DecisionAllowed, Withheld: 3}, {Decision: dnsproxy.DecisionWouldDeny, Withheld: 1}}, 0, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := New(Sources{})
			for _, o := range tc.outcomes {
				m.Query(o)
			}
			if got := testutil.ToFloat64(m.stale); got != tc.stale {
				t.Errorf("fqdngate_dns_stale_answers_total %v, want %v", got, tc.stale)
			}
			if got := testutil.ToFloat64(m.withheld); got != tc.withheld {
				t.Errorf("fqdngate_dns_private_addresses_withheld_total %v, want %v", got, tc.withheld)
			}
		})
	}
}
