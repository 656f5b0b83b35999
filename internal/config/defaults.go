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
	// Feeds push (feeds.go): one request at most every 50 ms or 500
	// addresses keeps the push lag far below a CDN TTL.
	DefaultPushTag      = "fqdngate-{client}-{rule}"
	DefaultPushBatchMS  = 50
	DefaultPushBatchMax = 500
)

// applyDefaults fills every unset field. Scope depends on Hook: on the
// host (hook output) the DNS client is loopback while connections leave
// from the interface address, so per-client scope cannot hold there.
func (c *Config) applyDefaults(ps positions) {
	if len(c.Listen.DNS) == 0 {
		c.Listen.DNS = []string{DefaultDNSListen}
	}
	setDefault(&c.Listen.API, DefaultAPIListen)
	if c.UpstreamTimeout == 0 {
		c.UpstreamTimeout = DefaultUpstreamTimeout
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
	setDefault(&c.Log.Format, DefaultLogFormat)
	setDefault(&c.Log.Level, DefaultLogLevel)
	c.applyFeedDefaults()
}

func setDefault(s *string, v string) {
	if *s == "" {
		*s = v
	}
}
