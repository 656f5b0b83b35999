package dnsproxy

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// gatedUpstream answers as its fakeUpstream once released, and says when
// a query has reached it: the test steps a query and a reload past each
// other without sleeping.
type gatedUpstream struct {
	*fakeUpstream
	asked   chan struct{}
	release chan struct{}
}

func (g *gatedUpstream) Exchange(ctx context.Context, q *dns.Msg) (Reply, error) {
	g.asked <- struct{}{}
	<-g.release
	return g.fakeUpstream.Exchange(ctx, q)
}

// reloadTo does what the gateway's reloader does, in its order: the new
// policy first, then the ledger's withdrawal and the kernel's.
func (e *env) reloadTo(t *testing.T, p *policy.Policy) {
	t.Helper()
	e.h.SetPolicy(p)
	revoke, _ := e.led.Repolicy(t0, func(t ledger.Told) ([]policy.PortRange, []string, bool) {
		return Granted(p, t)
	})
	if err := e.enf.Revoke(context.Background(), revoke); err != nil {
		t.Fatal(err)
	}
}

func TestReloadDuringQuery(t *testing.T) {
	withoutUpdate := func(t *testing.T) *policy.Policy {
		p := testPolicy(t)
		g := p.Groups()[0]
		np, err := policy.New([]*policy.Group{{Name: g.Name, Prefixes: g.Prefixes, Rules: g.Rules[1:]}})
		if err != nil {
			t.Fatal(err)
		}
		return np
	}
	onlyPort443 := func(t *testing.T) *policy.Policy {
		p := testPolicy(t)
		g := p.Groups()[0]
		r := *g.Rules[0]
		r.Ports = []policy.PortRange{tcp443}
		np, err := policy.New([]*policy.Group{{Name: g.Name, Prefixes: g.Prefixes, Rules: []*policy.Rule{&r, g.Rules[1]}}})
		if err != nil {
			t.Fatal(err)
		}
		return np
	}
	tests := []struct {
		name      string
		reload    func(*testing.T) *policy.Policy
		rcode     int
		installed int // elements left in the kernel
		decision  string
	}{
		{"the reload withdrew the name", withoutUpdate, dns.RcodeServerFailure, 0, DecisionWithdrawn},
		{"the reload took a port away", onlyPort443, dns.RcodeServerFailure, 0, DecisionWithdrawn},
		{"the reload left the rule as it was", func(t *testing.T) *policy.Policy { return testPolicy(t) }, dns.RcodeSuccess, 4, DecisionAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			g := &gatedUpstream{fakeUpstream: e.up, asked: make(chan struct{}), release: make(chan struct{})}
			e.h.upstream = g
			var out Outcome
			e.h.SetObserver(observerFunc(func(o Outcome) { out = o }))
			done := make(chan *dns.Msg)
			go func() {
				done <- e.h.Resolve(context.Background(), devA, query("prod.update.sphere.azure.net.", dns.TypeA, true))
			}()
			<-g.asked // the query matched the old policy and is upstream
			e.reloadTo(t, tc.reload(t))
			close(g.release)
			resp := <-done
			if resp.Rcode != tc.rcode || out.Decision != tc.decision {
				t.Fatalf("rcode %s, decision %s; want %s, %s", dns.RcodeToString[resp.Rcode], out.Decision,
					dns.RcodeToString[tc.rcode], tc.decision)
			}
			if len(e.enf.Elems) != tc.installed {
				t.Errorf("%d elements in the kernel, want %d: %v", len(e.enf.Elems), tc.installed, e.enf.Elems)
			}
			entries, _ := e.led.Select(ledger.Filter{Client: devA}, 100)
			if tc.installed == 0 && len(entries) != 0 {
				t.Errorf("ledger still holds %v", entries)
			}
		})
	}
}

// countingHandler counts the log records that reach it.
type countingHandler struct{ n *int }

func (c countingHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (c countingHandler) Handle(context.Context, slog.Record) error { *c.n++; return nil }
func (c countingHandler) WithAttrs([]slog.Attr) slog.Handler        { return c }
func (c countingHandler) WithGroup(string) slog.Handler             { return c }

func TestDeniedQueriesLogWithinBudget(t *testing.T) {
	e := newEnv(t, nil)
	lines := 0
	now := t0
	e.h = NewHandler(testPolicy(t), e.up, e.led, e.enf, e.opts, slog.New(countingHandler{&lines}), func() time.Time { return now })
	// A device asking random denied names, 2,000 in one second: every
	// one is denied and counted, the log gets the burst.
	for i := range 2000 {
		r := e.h.Resolve(context.Background(), devA, query(fmt.Sprintf("r%d.tunnel.example.", i), dns.TypeA, false))
		if r.Rcode != dns.RcodeNameError {
			t.Fatalf("query %d: %s", i, dns.RcodeToString[r.Rcode])
		}
	}
	if lines != queryLogsBurst || e.h.Stats().Denied.Load() != 2000 || e.h.Stats().LogsSuppressed.Load() != 2000-queryLogsBurst {
		t.Fatalf("%d log lines, %d denied, %d suppressed; want %d, 2000, %d", lines, e.h.Stats().Denied.Load(),
			e.h.Stats().LogsSuppressed.Load(), queryLogsBurst, 2000-queryLogsBurst)
	}
	// A second later the budget has refilled by its rate.
	now = now.Add(time.Second)
	for i := range 100 {
		e.h.Resolve(context.Background(), devA, query(fmt.Sprintf("s%d.tunnel.example.", i), dns.TypeA, false))
	}
	if want := queryLogsBurst + queryLogsPerSec; lines != want {
		t.Errorf("%d log lines after a second, want %d", lines, want)
	}
}
