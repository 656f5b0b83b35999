package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/fqdngate/fqdngate/internal/clientlimit"
	"github.com/fqdngate/fqdngate/internal/config"
	"github.com/fqdngate/fqdngate/internal/dnsproxy"
	"github.com/fqdngate/fqdngate/internal/enforce"
	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// ErrNoReload is returned when there is no configuration file to re-read.
var ErrNoReload = errors.New("reload: fqdngate runs without a configuration file")

// reloader applies a re-read configuration's policy while running. Only
// Run's loop calls it, so reloads never overlap.
type reloader struct {
	cfg  *config.Config
	load func() (*config.Config, error)
	led  *ledger.Ledger
	enf  enforce.Enforcer
	h    *dnsproxy.Handler
	log  *slog.Logger
	spec enforce.Spec
	// limits takes the groups' new max_qps and max_inflight.
	limits *clientlimit.Limiter
	// applied, if set, hears every configuration whose policy is now in
	// force (the console's view).
	applied func(*config.Config)
}

// reload re-reads the configuration. An invalid one is rejected and the
// running one stays. Otherwise the new policy is in force for the next
// query, and addresses learnt for names it denies (or on ports it no longer
// allows) are withdrawn from the kernel before reload returns; nothing else
// is touched. Settings that cannot change while running are reported.
func (r *reloader) reload(ctx context.Context) error {
	if r.load == nil {
		return ErrNoReload
	}
	nc, err := r.load()
	if err != nil {
		r.log.Error("reload rejected; the running configuration stays in force", "err", err)
		return fmt.Errorf("reload rejected, the running configuration stays in force: %w", err)
	}
	logWarnings(r.log, nc)
	if fields := restartOnly(r.cfg, nc); len(fields) > 0 {
		r.log.Warn("reload: these settings take effect only after a restart; the policy is applied", "fields", strings.Join(fields, ", "))
	}
	pol := nc.Derived.Policy
	now := time.Now()
	// New queries see the new policy first; then what was told under the
	// old one is withdrawn.
	r.h.SetPolicy(pol)
	r.limits.SetLimits(clientLimits(nc))
	revoke, grant := r.led.Repolicy(now, func(t ledger.Told) ([]policy.PortRange, []string, bool) {
		return dnsproxy.Granted(pol, t)
	})
	spec := r.spec
	spec.Clients = pol.Prefixes()
	spec.Static = staticSpec(nc)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if n, ok := r.enf.(*enforce.NFT); ok && (!slices.Equal(spec.Clients, r.spec.Clients) || !reflect.DeepEqual(spec.Static, r.spec.Static)) {
		// Other client networks or static prefixes (a fresh service tags
		// file): the table's chains or static sets change. Rebuild it
		// with exactly what the ledger holds now, in one transaction.
		if err := n.Rebuild(ctx, spec, r.led.Grants(now)); err != nil {
			return fmt.Errorf("reload: rebuild table: %w", err)
		}
		r.spec = spec
		warnUnredirected(spec, r.log)
	} else {
		if err := r.enf.Revoke(ctx, revoke); err != nil {
			return fmt.Errorf("reload: withdraw %d elements: %w", len(revoke), err)
		}
		if err := r.enf.Allow(ctx, grant); err != nil {
			return fmt.Errorf("reload: add %d elements: %w", len(grant), err)
		}
	}
	r.cfg.Clients, r.cfg.Derived.Policy, r.cfg.Derived.Static = nc.Clients, pol, nc.Derived.Static
	if r.applied != nil {
		r.applied(nc)
	}
	r.log.Info("reloaded", "groups", len(pol.Groups()), "withdrawn", len(revoke), "added", len(grant), "static_rules", len(spec.Static))
	return nil
}

// restartOnly lists the settings that differ and are not applied by a
// reload: everything but the client groups and their rules.
func restartOnly(old, nc *config.Config) []string {
	var out []string
	check := func(name string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			out = append(out, name)
		}
	}
	check("mode", old.Mode, nc.Mode)
	check("listen", old.Listen, nc.Listen)
	check("upstreams", old.Upstreams, nc.Upstreams)
	check("upstream_timeout", old.UpstreamTimeout, nc.UpstreamTimeout)
	check("upstream_case_randomization", old.UpstreamCaseRandomization, nc.UpstreamCaseRandomization)
	check("upstream_ca_file", old.UpstreamCAFile, nc.UpstreamCAFile)
	// static_max_addresses only bounds validation, which the reload ran.
	oe, ne := old.Enforcer, nc.Enforcer
	oe.StaticMaxAddresses, ne.StaticMaxAddresses = 0, 0
	check("enforcer", oe, ne)
	check("deny_response", old.DenyResponse, nc.DenyResponse)
	check("max_inflight", old.MaxInflight, nc.MaxInflight)
	// The cache is sized when it is made (dnsproxy.NewCache); resizing a
	// live one would drop or keep answers arbitrarily.
	check("cache_size", old.CacheSize, nc.CacheSize)
	check("serve_stale", old.ServeStale, nc.ServeStale)
	check("state_dir", old.StateDir, nc.StateDir)
	check("log", old.Log, nc.Log)
	check("api", old.API, nc.API)
	check("feeds", old.Feeds, nc.Feeds)
	// The NATS connection, the embedded server and the node's subjects
	// are made once at start.
	check("cluster", old.Cluster, nc.Cluster)
	return out
}
