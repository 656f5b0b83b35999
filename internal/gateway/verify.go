package gateway

import (
	"context"
	"log/slog"
	"slices"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fqdngate/fqdngate/internal/config"
	"github.com/fqdngate/fqdngate/internal/enforce"
	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/monitor"
	"github.com/fqdngate/fqdngate/internal/verify"
)

// verifyQueue is the NFQUEUE number of enforcer.verify.
const verifyQueue = 5353

// verifySpec is the kernel side of enforcer.verify: every port some rule
// verifies.
func verifySpec(c *config.Config) enforce.VerifySpec {
	v := enforce.VerifySpec{Mode: c.Enforcer.Verify, Queue: verifyQueue}
	if v.Mode == enforce.VerifyOff {
		return v
	}
	v.Ports = slices.Clone(defaultVerifyPorts)
	for _, g := range c.Clients {
		for _, r := range g.Rules {
			for _, p := range config.VerifyPorts(r) {
				if !slices.Contains(v.Ports, p) {
					v.Ports = append(v.Ports, p)
				}
			}
		}
	}
	return v
}

// verifyRules are the ports each configured rule verifies (a rule's
// verify: false and tls_ports); a reload swaps them whole. Catalog
// rules verify the default ports.
type verifyRules struct {
	ports atomic.Pointer[map[[2]string][]uint16]
}

// set takes c's rules.
func (v *verifyRules) set(c *config.Config) {
	ports := map[[2]string][]uint16{}
	for _, g := range c.Clients {
		for _, r := range g.Rules {
			ports[[2]string{g.Name, r.Name}] = config.VerifyPorts(r)
		}
	}
	v.ports.Store(&ports)
}

func (v *verifyRules) verifies(group, rule string, port uint16) bool {
	p, ok := (*v.ports.Load())[[2]string{group, rule}]
	if !ok {
		p = defaultVerifyPorts
	}
	return slices.Contains(p, port)
}

var defaultVerifyPorts = slices.Concat(config.DefaultVerifyTLSPorts, config.DefaultVerifyHTTPPorts)

// startVerify judges the flows the kernel queues, until ctx ends. It
// returns the rules the judge goes by, for a reload to replace; nil when
// verification is off.
func startVerify(ctx context.Context, c *config.Config, led *ledger.Ledger, mon *monitor.Monitor, reg prometheus.Registerer, log *slog.Logger) (*verifyRules, error) {
	if c.Enforcer.Verify == enforce.VerifyOff || c.Enforcer.Backend != "nftables" {
		return nil, nil
	}
	rules := &verifyRules{}
	rules.set(c)
	q := &verify.Queue{
		// mode: observe drops nothing, verification included.
		Num: verifyQueue, Observe: c.Enforcer.Verify == enforce.VerifyObserve || c.Mode == config.ModeObserve, Monitor: mon, Log: log,
		Judge: &verify.Judge{
			Ledger: led, Global: c.Enforcer.Scope == "global", HTTPPorts: config.DefaultVerifyHTTPPorts,
			Verifies: rules.verifies,
		},
	}
	if err := q.Start(ctx); err != nil {
		return nil, err
	}
	reg.MustRegister(q.Collector())
	return rules, nil
}
