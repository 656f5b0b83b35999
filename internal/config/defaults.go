package config

import "time"

// Defaults. They are named so that docs and tests can refer to them.
const (
	DefaultDNSListen       = "127.0.0.1:53"
	DefaultAPIListen       = "127.0.0.1:9053"
	DefaultUpstreamTimeout = 2 * time.Second
	DefaultCloud           = "public"
	DefaultBackend         = "nftables"
	DefaultTable           = "fqdngate"
	DefaultHook            = "forward"
	DefaultMinTTL          = 5 * time.Minute
	DefaultMaxTTL          = time.Hour
	DefaultGrace           = 2 * time.Minute
	DefaultMaxAddrsPerName = 256
	// DefaultMaxEntries keeps the ledger near 64 MiB in the worst case.
	DefaultMaxEntries   = 262144
	DefaultHold         = time.Second
	DefaultGCInterval   = 10 * time.Second
	DefaultNFLogGroup   = 53
	DefaultMark         = 0xfd53
	DefaultDenyResponse = "nxdomain"
	DefaultMaxInflight  = 1024
	DefaultStateDir     = "/var/lib/fqdngate"
	DefaultCacheSize    = 100000
	DefaultLogFormat    = "text"
	DefaultLogLevel     = "info"
	// DefaultStaticMaxAddresses is a /16 worth: wider than any one
	// service's regional tag, narrower than a CDN's or a cloud's ranges.
	DefaultStaticMaxAddresses = 65536
	// DefaultVerify is off: verification changes what reaches the
	// network for every device (no SNI, another name on a shared
	// address); observe first shows what enforce would stop.
	DefaultVerify = "off"
	// TCP DNS: connections of all clients, of one client, the idle
	// timeout between queries and the time a query may take to arrive.
	DefaultTCPMaxConns          = 1024
	DefaultTCPMaxConnsPerClient = 16
	DefaultTCPIdleTimeout       = 10 * time.Second
	DefaultTCPReadTimeout       = 2 * time.Second
	// Feeds push (feeds.go): one request at most every 50 ms or 500
	// addresses keeps the push lag far below a CDN TTL.
	DefaultPushTag      = "fqdngate-{client}-{rule}"
	DefaultPushBatchMS  = 50
	DefaultPushBatchMax = 500
)

// Defaults of serve-stale and of what a rule lets answers hold.
const (
	// DefaultServeStale 0: expired answers are never served.
	DefaultServeStale     time.Duration = 0
	DefaultPrivateAnswers               = "withhold"
	DefaultCNAMETargets                 = "any"
	// MaxServeStale bounds serve_stale: RFC 8767 suggests 1 to 3 days, and
	// an answer older than a week says little about the name.
	MaxServeStale = 7 * 24 * time.Hour
)

// Cluster defaults (cluster.go).
const (
	// ClusterPort is the NATS route port, when listen or a route omits it.
	ClusterPort = 6222
	// DefaultClusterListen is the embedded server's route address without
	// routes: loopback, as there is no peer to reach it.
	DefaultClusterListen = "127.0.0.1"
	// DefaultCatchupTimeout: long enough for a peer that is up to send
	// what it has, short enough that a node whose peer is dead serves
	// within a VRRP takeover's seconds.
	DefaultCatchupTimeout = 10 * time.Second
	// MaxCatchupTimeout bounds catchup_timeout: a node not ready for
	// longer is a node down.
	MaxCatchupTimeout = 5 * time.Minute
)

// DefaultUpstreamCaseRandomization: 0x20 on, as most resolvers echo the
// case they are sent.
const DefaultUpstreamCaseRandomization = true

// Per-client fairness defaults (DESIGN section 16).
const (
	// DefaultEntriesShare: in scope client, one client may hold
	// max_entries / DefaultEntriesShare entries unless
	// max_entries_per_client says otherwise, so that it takes at most an
	// eighth of the ledger however many names it asks.
	DefaultEntriesShare = 8
	// DefaultClientMaxQPS is far above what a device asks (a few queries
	// a second, tens at boot; hundreds from a host behind NAT or a test
	// rig) and far below a flood (tens of thousands).
	DefaultClientMaxQPS = 1000
	// DefaultClientMaxInflight: a device with more queries than this
	// waiting at once is retrying or flooding.
	DefaultClientMaxInflight = 32
)

// applyDefaults fills every unset field. Scope depends on Hook: on the
// host (hook output) the DNS client is loopback while connections leave
// from the interface address, so per-client scope cannot hold there.
func (c *Config) applyDefaults(ps positions) {
	if len(c.Listen.DNS) == 0 {
		c.Listen.DNS = []string{DefaultDNSListen}
	}
	setDefault(&c.Listen.API, DefaultAPIListen)
	c.Listen.applyTCPDefaults()
	if c.UpstreamTimeout == 0 {
		c.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if !ps.present(path{"upstream_case_randomization"}) {
		c.UpstreamCaseRandomization = DefaultUpstreamCaseRandomization
	}
	setDefault(&c.Cloud, DefaultCloud)
	e := &c.Enforcer
	setDefault(&e.Backend, DefaultBackend)
	setDefault(&e.Table, DefaultTable)
	setDefault(&e.Hook, DefaultHook)
	if e.Scope == "" {
		e.Scope = "client"
		if e.Hook == "output" {
			e.Scope = "global"
		}
	}
	// min_ttl and grace may be set to 0 on purpose; only absence defaults.
	if !ps.present(path{"enforcer", "min_ttl"}) {
		e.MinTTL = DefaultMinTTL
	}
	if e.MaxTTL == 0 {
		e.MaxTTL = DefaultMaxTTL
	}
	if !ps.present(path{"enforcer", "grace"}) {
		e.Grace = DefaultGrace
	}
	if e.MaxAddrsPerName == 0 {
		e.MaxAddrsPerName = DefaultMaxAddrsPerName
	}
	if e.MaxEntries == 0 {
		e.MaxEntries = DefaultMaxEntries
	}
	if e.MaxEntriesPerClient == 0 {
		e.MaxEntriesPerClient = e.MaxEntries
		if e.Scope == "client" {
			e.MaxEntriesPerClient = max(e.MaxEntries/DefaultEntriesShare, 1)
		}
	}
	// max_qps and max_inflight 0 is no limit; only absence defaults.
	for i := range c.Clients {
		if !ps.present(path{"clients", i, "max_qps"}) {
			c.Clients[i].MaxQPS = DefaultClientMaxQPS
		}
		if !ps.present(path{"clients", i, "max_inflight"}) {
			c.Clients[i].MaxInflight = DefaultClientMaxInflight
		}
	}
	if e.Hold == 0 {
		e.Hold = DefaultHold
	}
	if e.GCInterval == 0 {
		e.GCInterval = DefaultGCInterval
	}
	if e.NFLogGroup == 0 {
		e.NFLogGroup = DefaultNFLogGroup
	}
	if e.Mark == 0 {
		e.Mark = DefaultMark
	}
	setDefault(&e.Verify, DefaultVerify)
	if e.StaticMaxAddresses == 0 {
		e.StaticMaxAddresses = DefaultStaticMaxAddresses
	}
	setDefault(&c.DenyResponse, DefaultDenyResponse)
	if c.MaxInflight == 0 {
		c.MaxInflight = DefaultMaxInflight
	}
	if !ps.present(path{"cache_size"}) {
		c.CacheSize = DefaultCacheSize
	}
	// An explicit state_dir: "" turns persistence off.
	if !ps.present(path{"state_dir"}) {
		c.StateDir = DefaultStateDir
	}
	c.applyAnswerDefaults()
	setDefault(&c.Log.Format, DefaultLogFormat)
	setDefault(&c.Log.Level, DefaultLogLevel)
	c.applyFeedDefaults()
	c.applyClusterDefaults(ps)
}

func setDefault(s *string, v string) {
	if *s == "" {
		*s = v
	}
}
