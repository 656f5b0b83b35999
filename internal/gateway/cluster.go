package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fqdngate/fqdngate/internal/cluster"
	"github.com/fqdngate/fqdngate/internal/config"
	"github.com/fqdngate/fqdngate/internal/dnsproxy"
	"github.com/fqdngate/fqdngate/internal/enforce"
	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/monitor"
)

// joinCluster starts this node's part of its site (cluster:), or returns
// nil without one. What the node answers is published (the returned
// observer); what the others answered is applied to this node's kernel
// and ledger, judged by this node's own policy.
func joinCluster(ctx context.Context, c *config.Config, led *ledger.Ledger, enf enforce.Enforcer, h *dnsproxy.Handler,
	mon *monitor.Monitor, reg prometheus.Registerer, log *slog.Logger) (*cluster.Node, dnsproxy.Observer, error) {
	cc := c.Cluster
	if cc == nil {
		return nil, nil, nil
	}
	d := c.Derived.Cluster
	e := c.Enforcer
	cfg := cluster.Config{
		Site: cc.Name, Node: cc.Node, Embedded: cc.Embedded(), Listen: d.Listen, Routes: d.Routes, URLs: d.URLs,
		Token: d.Token, MaxLife: max(e.MaxTTL, e.MinTTL) + e.Grace, MaxEntries: e.MaxEntries, CatchupTimeout: cc.CatchupTimeout,
	}
	if c.StateDir != "" {
		cfg.StoreDir = filepath.Join(c.StateDir, "jetstream")
	}
	n, err := cluster.Start(ctx, cfg, &applier{led: led, enf: enf, h: h, log: log}, log)
	if err != nil {
		return nil, nil, err
	}
	reg.MustRegister(n.Collectors()...)
	mon.Events.SetDropSink(func(ev monitor.Event) {
		if b, err := json.Marshal(ev); err == nil {
			n.PublishDrop(b)
		}
	})
	log.Info("cluster joined", "site", cc.Name, "node", cc.Node, "embedded", cc.Embedded(), "listen", d.Listen, "routes", d.Routes)
	return n, publisher{n}, nil
}

// publisher hands every answer this node gives to the cluster, one record
// per address; it never blocks the query.
type publisher struct{ n *cluster.Node }

func (p publisher) Query(out dnsproxy.Outcome) {
	a := out.Answer
	if a == nil {
		return
	}
	now := time.Now()
	for _, addr := range a.Addrs {
		p.n.Publish(cluster.Record{Node: a.Node, Client: a.Client, Group: a.Group, Name: a.Name, Chain: a.Chain,
			Addr: addr, TTL: a.TTL, Learnt: now, Expires: a.Expires})
	}
}

// applier installs other nodes' entries. A record is what another node
// says it told a client; this node grants it only as it would grant that
// answer itself (the client's group here, the name's rules and ports
// here, cname_targets and private_answers here), so a peer can never open
// more than this node's own policy allows.
type applier struct {
	led *ledger.Ledger
	enf enforce.Enforcer
	h   *dnsproxy.Handler
	log *slog.Logger
}

// applyWait bounds one batch's wait for the kernel.
const applyWait = 5 * time.Second

func (a *applier) Apply(ctx context.Context, recs []cluster.Record) []cluster.Verdict {
	pol := a.h.Policy()
	out := make([]cluster.Verdict, len(recs))
	answers := make([]ledger.Answer, 0, len(recs))
	var grants []ledger.Grant
	for i, r := range recs {
		ports, rules, ok := dnsproxy.Granted(pol, ledger.Told{Client: r.Client, Name: r.Name, Chain: r.Chain, Addr: r.Addr})
		if !ok {
			out[i] = cluster.Denied
			continue
		}
		ans := ledger.Answer{Client: r.Client, Group: pol.Match(r.Client, r.Name).Group.Name, Name: r.Name, Chain: r.Chain,
			Addrs: []netip.Addr{r.Addr}, Rules: rules, Ports: ports, TTL: r.TTL, Expires: r.Expires, Node: r.Node}
		answers = append(answers, ans)
		grants = append(grants, a.led.GrantsOf(ans)...)
	}
	if len(grants) > 0 {
		// The writer's queue may be busy (a catch-up of many batches):
		// Allow gives up after the query hold budget, so it is asked
		// again within applyWait. Grants the kernel already holds cost
		// it nothing.
		ctx, cancel := context.WithTimeout(ctx, applyWait)
		err := a.enf.Allow(ctx, grants)
		for errors.Is(err, enforce.ErrHoldTimeout) && ctx.Err() == nil {
			err = a.enf.Allow(ctx, grants)
		}
		cancel()
		// A lost table is rebuilt from what the ledger holds: recorded,
		// the entries come back with it.
		if err != nil && !errors.Is(err, enforce.ErrTableLost) {
			a.log.Warn("other nodes' answers not installed", "n", len(answers), "err", err)
			for i := range out {
				if out[i] == cluster.Applied {
					out[i] = cluster.Failed
				}
			}
			return out
		}
	}
	now := time.Now()
	var revoke []ledger.Elem
	for _, ans := range answers {
		revoke = append(revoke, a.led.Record(now, ans)...)
	}
	// An entry that one record of the batch evicted may cover an element
	// that a later record of the same batch holds (installed above):
	// that element stays.
	revoke = a.led.Uncovered(now, revoke)
	if len(revoke) > 0 {
		if lr, ok := a.enf.(interface{ RevokeLater([]ledger.Elem) bool }); ok {
			lr.RevokeLater(revoke)
		}
	}
	return out
}

// clusterStatus is the API's view of the node's site; nil outside one.
func clusterStatus(n *cluster.Node) func() any {
	if n == nil {
		return nil
	}
	return func() any { return n.Status() }
}
