// Package gateway assembles fqdngate from a validated configuration and
// runs it until its context ends. It is the wiring the CLI calls; the
// parts themselves live in their own packages.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/api"
	"github.com/fqdngate/fqdngate/internal/clientlimit"
	"github.com/fqdngate/fqdngate/internal/cluster"
	"github.com/fqdngate/fqdngate/internal/config"
	"github.com/fqdngate/fqdngate/internal/dnsproxy"
	"github.com/fqdngate/fqdngate/internal/enforce"
	"github.com/fqdngate/fqdngate/internal/feeds"
	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/metrics"
	"github.com/fqdngate/fqdngate/internal/monitor"
	"github.com/fqdngate/fqdngate/internal/policy"
	"github.com/fqdngate/fqdngate/internal/upstream"
)

// gcEvery is how often expired ledger entries are collected; the kernel
// ages elements out on its own, so this only bounds memory.
const gcEvery = 30 * time.Second

// shutdownGrace bounds how long in-flight queries may take at shutdown.
const shutdownGrace = 5 * time.Second

// flushEvery is how often the ledger's changes are written to the state
// file: a crash loses at most this much of what clients were told, and the
// elements of those answers are removed by the reconcile at the next start.
const flushEvery = 200 * time.Millisecond

// Options are the hooks of the process around the gateway.
type Options struct {
	// Ready, if set, is called once DNS is being served.
	Ready func()
	// Load reads the configuration again, for a reload; nil disables
	// reloads (no configuration file).
	Load func() (*config.Config, error)
	// Reload delivers reload requests (SIGHUP); each gets the outcome.
	Reload <-chan chan error
}

// Run serves DNS and enforces until ctx is cancelled.
//
// With a state_dir, it first loads the ledger, drops what has expired and
// rebuilds the kernel table with exactly the ledger's live elements in one
// transaction, before DNS is served; while it runs, the ledger is written
// behind every flushEvery, and once more after the last query at shutdown.
func Run(ctx context.Context, c *config.Config, log *slog.Logger, o Options) error {
	e := c.Enforcer
	logWarnings(log, c)
	led := ledger.New(ledger.Options{MaxPerName: e.MaxAddrsPerName, MaxEntries: e.MaxEntries, MaxPerClient: e.MaxEntriesPerClient,
		Global: e.Scope == "global", Track: c.StateDir != ""})
	store, err := openState(c, led, log)
	if err != nil {
		return err
	}
	if store != nil {
		defer store.Close()
	}

	spec := specOf(c, log)
	enf, err := openEnforcer(c, spec, log, led.Grants(time.Now()))
	if err != nil {
		return err
	}
	defer enf.Close() // the table stays in the kernel: fail closed, flows kept

	deny := dns.RcodeNameError
	if c.DenyResponse == "refused" {
		deny = dns.RcodeRefused
	}
	mon := monitor.New(led, monitor.Options{Global: e.Scope == "global", MinTTL: e.MinTTL, Grace: e.Grace}, log)
	cache := dnsproxy.NewCache(c.CacheSize)
	// The listeners come after the metrics; scrapes come after both (the
	// API starts last).
	var srv *dnsproxy.Server
	var h *dnsproxy.Handler
	limits := clientlimit.New(clientLimits(c))
	src := metrics.Sources{Ledger: led.Stats, Drops: mon.Counts, CacheLen: cache.Len,
		QueueDrops: func() uint64 { return srv.QueueDrops() }, RateLimited: limits.Refused, LimitedClients: limits.Tracked,
		RevokeDropped:  func() uint64 { return h.Stats().RevokeDropped.Load() },
		LogsSuppressed: func() (uint64, uint64) { return h.Stats().LogsSuppressed.Load(), mon.Suppressed() },
		TCP:            func() dnsproxy.TCPStats { return srv.TCPStats() }}
	if n, ok := enf.(*enforce.NFT); ok {
		src.Kernel, src.Elements, src.Writer = n.Counters, n.Elements, n.WriterStats
		src.Tamper = n.TamperStats
		// Someone else's change to the table withholds answers until it
		// is rebuilt from what the ledger holds (enforce/watch.go).
		if err := n.Watch(ctx, func() []ledger.Grant { return led.Grants(time.Now()) }); err != nil {
			return err
		}
	}
	met := metrics.New(src)
	pool, err := upstream.New(c.Derived.Upstreams, upstream.Options{
		Timeout: c.UpstreamTimeout, Mark: upstreamMark(c), CaseRandomization: c.UpstreamCaseRandomization,
		RootCAs: c.Derived.UpstreamRootCAs, Observer: met.Upstream(), Log: log,
	})
	if err != nil {
		return err
	}
	defer pool.Close()
	fm := feeds.NewMetrics()
	met.Registry.MustRegister(fm.Collectors()...)
	push, err := pushTargets(c, led, func() *policy.Policy { return h.Policy() }, fm, log)
	if err != nil {
		return err
	}
	h = dnsproxy.NewHandler(c.Derived.Policy, pool, led, withPush(enf, push, e.Hold),
		dnsproxy.Options{
			Observe: c.Mode == config.ModeObserve, DenyRcode: deny,
			MinTTL: e.MinTTL, MaxTTL: e.MaxTTL, Grace: e.Grace, MaxInflight: c.MaxInflight,
			Global: e.Scope == "global", Cache: cache, ServeStale: c.ServeStale, Limits: limits,
			StripECH: e.Verify != enforce.VerifyOff, Node: clusterNode(c),
		}, log, nil)
	node, pub, err := joinCluster(ctx, c, led, enf, h, mon, met.Registry, log)
	if err != nil {
		return err
	}
	obs := observers{mon, met, feeds.NewObserver(push)}
	if node != nil {
		defer node.Close() // after the listeners: the last answers are published
		obs = append(obs, pub)
	}
	h.SetObserver(obs)
	pushCtx, stopPush := context.WithCancel(context.Background())
	defer runPush(pushCtx, push)() // stopped after the listeners finished the last queries
	defer stopPush()

	// Subscribed before the listeners open: a drop is explained from the
	// first answer on.
	if e.Backend == "nftables" {
		if err := mon.ListenNFLOG(ctx, e.NFLogGroup); err != nil {
			log.Warn("drops are counted but cannot be explained", "err", err)
		}
		if err := startVerify(ctx, c, led, mon, met.Registry, log); err != nil {
			return err
		}
	}

	feedsH, err := pullFeeds(c, led, h, fm, log)
	if err != nil {
		return err
	}

	started := time.Now()
	sec, err := api.NewSecurity(c.API.TokenFile, c.API.TLSCert, c.API.TLSKey, !c.Derived.API.Addr().IsLoopback())
	if err != nil {
		return err
	}
	view := newConsoleView(c)
	rl := &reloader{cfg: c, load: o.Load, led: led, enf: enf, h: h, log: log, spec: spec, limits: limits, applied: view.set}
	srv, err = dnsproxy.Listen(c.Derived.DNS, h, c.MaxInflight, dnsproxy.TCPOptions{Serves: h.Serves,
		MaxConns: c.Listen.TCPMaxConns, MaxConnsPerClient: c.Listen.TCPMaxConnsPerClient,
		IdleTimeout: c.Listen.TCPIdleTimeout, ReadTimeout: c.Listen.TCPReadTimeout}, clusterListen(c)...)
	if err != nil {
		return err
	}
	apiReload := make(chan chan error)
	apiSrv, err := api.Listen(c.Derived.API, api.Handler(api.Deps{
		Ledger: led, Monitor: mon, Registry: met.Registry, Log: log, Pprof: os.Getenv("FQDNGATE_PPROF") == "1",
		Ready:  func() (bool, string) { return ready(enf, node) },
		Reload: func(ctx context.Context) error { return requestReload(ctx, apiReload) },
		Mode:   c.Mode, Started: started, Upstreams: upstreamNames(c), Policy: view.get, Security: sec,
		Feeds: feedsH, Cluster: clusterStatus(node),
	}), sec.TLSConfig())
	if err != nil {
		_ = srv.Shutdown(context.Background())
		return err
	}
	log.Info("serving", "mode", c.Mode, "dns", c.Listen.DNS, "upstreams", c.Upstreams,
		"backend", e.Backend, "table", e.Table, "hook", e.Hook, "scope", e.Scope, "state_dir", c.StateDir)
	if o.Ready != nil {
		o.Ready()
	}

	gc := time.NewTicker(gcEvery)
	defer gc.Stop()
	flush := time.NewTicker(flushEvery)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down: finishing queries in flight")
			sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
			defer cancel()
			err := errors.Join(srv.Shutdown(sctx), apiSrv.Shutdown(sctx))
			if store != nil {
				err = errors.Join(err, store.Flush(led))
				log.Info("ledger written", "file", store.Path(), "entries", led.Stats().Entries)
			}
			return err
		case err := <-srv.Err():
			return fmt.Errorf("dns listener stopped: %w", err)
		case err := <-apiSrv.Err():
			return fmt.Errorf("api listener stopped: %w", err)
		case now := <-gc.C:
			if n := led.GC(now); n > 0 {
				log.Debug("ledger gc", "removed", n, "entries", led.Stats().Entries)
			}
		case <-flush.C:
			if store != nil {
				if err := store.Flush(led); err != nil {
					log.Error("ledger not written; will retry", "err", err)
				}
			}
		case done := <-o.Reload:
			reloadSecurity(sec, log)
			done <- rl.reload(ctx)
		case done := <-apiReload:
			reloadSecurity(sec, log)
			done <- rl.reload(ctx)
		}
	}
}

// requestReload hands a reload to Run's loop and waits for the outcome.
func requestReload(ctx context.Context, ch chan chan error) error {
	done := make(chan error, 1)
	select {
	case ch <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// openState opens the state file and restores the ledger from it.
func openState(c *config.Config, led *ledger.Ledger, log *slog.Logger) (*ledger.Store, error) {
	if c.StateDir == "" {
		return nil, nil
	}
	if err := ledger.EnsureDir(c.StateDir); err != nil {
		return nil, err
	}
	store, err := ledger.OpenStore(filepath.Join(c.StateDir, ledger.StoreFile))
	if err != nil {
		return nil, err
	}
	entries, err := store.Load()
	if err != nil {
		store.Close()
		return nil, err
	}
	kept, dropped := led.Restore(time.Now(), entries)
	log.Info("ledger restored", "file", store.Path(), "entries", kept, "expired_or_over_caps", dropped)
	return store, nil
}

// observers tells every observer of a query's outcome.
type observers []dnsproxy.Observer

func (o observers) Query(out dnsproxy.Outcome) {
	for _, x := range o {
		x.Query(out)
	}
}

// ready: the kernel table is in place and, in a cluster, the node has
// caught up with its site.
func ready(enf enforce.Enforcer, node *cluster.Node) (bool, string) {
	if ok, why := tableReady(enf); !ok {
		return false, why
	}
	if node != nil {
		return node.Ready()
	}
	return true, ""
}

// tableReady: DNS is served once Run reaches the API, so readiness is the
// kernel table: its counters must be readable.
func tableReady(enf enforce.Enforcer) (bool, string) {
	if n, ok := enf.(*enforce.NFT); ok && n.Lost() {
		return false, "nftables table lost to another process's change; being restored"
	}
	if _, err := enf.Counters(); err != nil {
		return false, "nftables table not readable: " + err.Error()
	}
	return true, ""
}

func openEnforcer(c *config.Config, spec enforce.Spec, log *slog.Logger, restore []ledger.Grant) (enforce.Enforcer, error) {
	e := c.Enforcer
	if e.Backend == "none" {
		return enforce.None{}, nil
	}
	if e.Hook == "forward" {
		if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err == nil && strings.TrimSpace(string(b)) != "1" {
			log.Warn("hook forward, but IPv4 forwarding is off (net.ipv4.ip_forward=0): devices cannot pass through this host")
		}
	}
	warnUnredirected(spec, log)
	// The refresh slack only ever takes from the grace, never the TTL.
	slack := min(time.Second, e.Grace/2)
	n, err := enforce.Open(spec, enforce.WithLogger(log), enforce.WithInitial(restore),
		enforce.WithRefreshSlack(slack), enforce.WithHold(e.Hold))
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("%w (fqdngate needs CAP_NET_ADMIN; or set enforcer.backend: none)", err)
		}
		return nil, err
	}
	return n, nil
}

// specOf describes the table a configuration needs.
func specOf(c *config.Config, log *slog.Logger) enforce.Spec {
	e := c.Enforcer
	spec := enforce.Spec{
		Table: e.Table, Hook: e.Hook, Global: e.Scope == "global", Observe: c.Mode == config.ModeObserve,
		Clients: c.Derived.Policy.Prefixes(), NFLogGroup: e.NFLogGroup, Mark: e.Mark, GCInterval: e.GCInterval,
	}
	spec.DNS4, spec.DNS6 = redirectTargets(c.Derived.DNS, e.Hook, log)
	if c.Cluster != nil { // cluster_redirect.go
		spec.DNS4, spec.DNS6 = clusterRedirect(spec.DNS4, spec.DNS6, e.Hook)
		if held, err := interfaceAddrs(); err == nil {
			warnNoHeldListener(c.Derived.DNS, spec.DNS4, spec.DNS6, held, log)
		}
	}
	spec.Static = staticSpec(c)
	spec.Verify = verifySpec(c)
	return spec
}

// redirectTargets picks where clients' DNS is redirected: the first
// listen address of each family. Forwarded packets cannot be sent to a
// loopback listener, so on hook forward those are skipped with a warning.
func redirectTargets(dnsAddrs []netip.AddrPort, hook string, log *slog.Logger) (v4, v6 netip.AddrPort) {
	for _, a := range dnsAddrs {
		if hook == "forward" && a.Addr().IsLoopback() {
			log.Warn("listen address is loopback: clients' DNS to other servers cannot be redirected to it", "addr", a)
			continue
		}
		if a.Addr().Is4() && !v4.IsValid() {
			v4 = a
		}
		if a.Addr().Is6() && !v6.IsValid() {
			v6 = a
		}
	}
	return v4, v6
}

// warnUnredirected names the client networks whose DNS to other servers
// is dropped, not redirected, for want of a listen address of their
// family: it fails closed, but their resolvers time out on that family,
// and every such query is a drop (reason dns) until a listen address is
// added.
func warnUnredirected(s enforce.Spec, log *slog.Logger) {
	for _, fam := range []struct {
		v6     bool
		target netip.AddrPort
		name   string
	}{{false, s.DNS4, "IPv4"}, {true, s.DNS6, "IPv6"}} {
		if fam.target.IsValid() {
			continue
		}
		var nets []string
		for _, p := range s.Clients {
			if p.Addr().Is6() == fam.v6 {
				nets = append(nets, p.String())
			}
		}
		if len(nets) > 0 {
			log.Warn("no "+fam.name+" listen address that clients can reach: their "+fam.name+
				" DNS to other servers is dropped, not redirected to fqdngate; add one to listen.dns",
				"hook", s.Hook, "clients", strings.Join(nets, " "))
		}
	}
}

// upstreamMark is set on upstream sockets on hook output, so that the
// host's own redirect and filter rules let fqdngate's queries through.
func upstreamMark(c *config.Config) uint32 {
	if c.Enforcer.Backend == "nftables" && c.Enforcer.Hook == "output" {
		return c.Enforcer.Mark
	}
	return 0
}

// upstreamNames are the upstreams as the metrics label them.
func upstreamNames(c *config.Config) []string {
	out := make([]string, len(c.Derived.Upstreams))
	for i, u := range c.Derived.Upstreams {
		out[i] = u.String()
	}
	return out
}
