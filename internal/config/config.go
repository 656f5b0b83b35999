package config

import (
	"time"
)

// Modes.
const (
	ModeObserve = "observe"
	ModeEnforce = "enforce"
)

// Config is the whole file. Every field has a default (see defaults.go)
// unless marked required.
type Config struct {
	// Mode is observe (log would-be denials, block nothing) or enforce.
	// Required: a security device should not guess which one you meant.
	Mode string `yaml:"mode"`
	// Listen says where DNS and the HTTP API are served.
	Listen Listen `yaml:"listen"`
	// Upstreams are the resolvers fqdngate forwards allowed queries to, as
	// IP, IP:port or [v6]:port (port 53 if omitted), or DNS over TLS as
	// tls://IP[:port]#servername (port 853 if omitted; the certificate
	// must carry servername). Names are not accepted as addresses:
	// resolving them would need a resolver. Required.
	Upstreams []string `yaml:"upstreams"`
	// UpstreamTimeout bounds one exchange with one upstream; a query's
	// attempts together are bounded by upstream.DefaultQueryTimeout.
	UpstreamTimeout time.Duration `yaml:"upstream_timeout"`
	// UpstreamCaseRandomization sends query names upstream in random
	// case (0x20) and believes only replies that echo it exactly. Turn it
	// off for upstreams that do not echo the case.
	UpstreamCaseRandomization bool `yaml:"upstream_case_randomization"`
	// UpstreamCAFile is a PEM file of the certificates tls:// upstreams
	// are verified against; "" means the system roots.
	UpstreamCAFile string `yaml:"upstream_ca_file"`
	// Region fills <region> in catalog entries ("East US 2" → "eastus2").
	Region string `yaml:"region"`
	// Cloud selects catalog variants: public, usgov or china.
	Cloud string `yaml:"cloud"`
	// Params fill catalog placeholders other than the region, e.g.
	// iot_hub or witness_storage_account.
	Params map[string]string `yaml:"params"`
	// Enforcer configures the kernel side.
	Enforcer Enforcer `yaml:"enforcer"`
	// Clients are the client groups; a source outside all of them is refused.
	Clients []Client `yaml:"clients"`
	// DenyResponse is the answer to denied names: nxdomain or refused.
	DenyResponse string `yaml:"deny_response"`
	// CacheSize bounds the answers kept for their TTL; 0 turns the cache
	// off.
	CacheSize int `yaml:"cache_size"`
	// MaxInflight bounds the queries being worked on at once; beyond it new
	// queries get SERVFAIL at once instead of queueing without bound.
	MaxInflight int `yaml:"max_inflight"`
	// ServeStale keeps cached answers this long past their expiry and
	// serves them, with TTL 30 s and installed like any answer, when no
	// upstream answers (RFC 8767). 0 turns it off; it needs the cache.
	ServeStale time.Duration `yaml:"serve_stale"`
	// StateDir holds the ledger (ledger.db), so that a restart keeps what
	// clients were told. "" keeps nothing.
	StateDir string `yaml:"state_dir"`
	// Log configures structured logging.
	Log Log `yaml:"log"`
	// API secures the HTTP API and the console: a token, and HTTPS.
	API API `yaml:"api"`
	// Feeds tells the site's own firewall what was answered (feeds.go).
	Feeds Feeds `yaml:"feeds"`
	// Cluster replicates answers between the gateways of a site
	// (cluster.go); nil: no cluster.
	Cluster *Cluster `yaml:"cluster"`

	// Derived is filled by validation.
	Derived Derived `yaml:"-"`
}

// Listen is the listen section.
type Listen struct {
	// DNS addresses (IP:port), served on UDP and TCP.
	DNS []string `yaml:"dns"`
	// API is the HTTP API address; loopback by default.
	API string `yaml:"api"`
	// TCPMaxConns bounds the DNS-over-TCP connections open at once, on
	// all addresses together; beyond it a connection is closed at accept.
	TCPMaxConns int `yaml:"tcp_max_conns"`
	// TCPMaxConnsPerClient bounds the connections of one source address,
	// so that one device cannot take them all.
	TCPMaxConnsPerClient int `yaml:"tcp_max_conns_per_client"`
	// TCPIdleTimeout closes a connection with no query outstanding that
	// sends nothing for this long.
	TCPIdleTimeout time.Duration `yaml:"tcp_idle_timeout"`
	// TCPReadTimeout closes a connection whose query has not arrived whole
	// this long after its first byte (slowloris).
	TCPReadTimeout time.Duration `yaml:"tcp_read_timeout"`
}

// Enforcer is the enforcer section.
type Enforcer struct {
	// Backend is nftables, or none (resolve and record only).
	Backend string `yaml:"backend"`
	// Table is the name of fqdngate's own `table inet`; nothing else is touched.
	Table string `yaml:"table"`
	// Hook is forward (a gateway for a device network) or output (the host
	// is its own client).
	Hook string `yaml:"hook"`
	// Scope is client (an answer opens the address for the asking client
	// only) or global (for every client). Hook output implies global.
	Scope string `yaml:"scope"`
	// MinTTL is the shortest lifetime an answer's addresses get.
	MinTTL time.Duration `yaml:"min_ttl"`
	// MaxTTL caps answer TTLs (the client is told the capped TTL too), so a
	// week-long TTL does not hold an address open for a week.
	MaxTTL time.Duration `yaml:"max_ttl"`
	// Grace is added to every lifetime, for clients that use an answer a
	// little after it expired.
	Grace time.Duration `yaml:"grace"`
	// MaxAddrsPerName caps the addresses kept per client and name; the
	// oldest are evicted first.
	MaxAddrsPerName int `yaml:"max_addrs_per_name"`
	// MaxEntries caps the ledger as a whole: an expired entry is evicted
	// first, else the entry closest to expiry of the client holding the
	// most (internal/ledger/quota.go).
	MaxEntries int `yaml:"max_entries"`
	// MaxEntriesPerClient caps one client's ledger entries: a client at it
	// evicts its own oldest answers, never another client's. Unset: a
	// fair share of max_entries in scope client (max_entries /
	// DefaultEntriesShare), max_entries in scope global.
	MaxEntriesPerClient int `yaml:"max_entries_per_client"`
	// Hold is how long an answer may wait for the kernel to acknowledge its
	// rule; past it the client gets SERVFAIL.
	Hold time.Duration `yaml:"hold"`
	// GCInterval is how often the kernel walks fqdngate's sets for expired
	// elements. Each walk visits every element on one CPU; the kernel's
	// default, every second, costs tens of milliseconds a second with a
	// few hundred thousand elements. Expired elements match nothing while
	// they wait; they only hold their memory a little longer.
	GCInterval time.Duration `yaml:"gc_interval"`
	// NFLogGroup is the netlink log group dropped packets are sent to.
	NFLogGroup uint16 `yaml:"nflog_group"`
	// Mark is the firewall mark on fqdngate's own upstream traffic, so that
	// hook output neither redirects nor drops it.
	Mark uint32 `yaml:"mark"`
	// StaticMaxAddresses bounds what one rule's static part may open, and
	// each of its prefixes and tags (IPv6 counted in /64s).
	StaticMaxAddresses uint64 `yaml:"static_max_addresses"`
	// Verify checks the name inside each new flow on a verified port
	// (TLS server_name, HTTP Host) against the names answered to that
	// client for that address: off, observe (log and count mismatches)
	// or enforce (reset them). See verify.go.
	Verify string `yaml:"verify"`
}

// Client is one client group.
type Client struct {
	Name string `yaml:"name"`
	// CIDRs are the group's networks. Nested networks across groups are
	// allowed (the longest prefix wins); the same network twice is an error.
	CIDRs []string `yaml:"cidrs"`
	// Profiles pull rules from the built-in catalog.
	Profiles []string `yaml:"profiles"`
	// Params fill the profiles' placeholders for this group, over the
	// top-level params (e.g. a group's own IoT hub).
	Params map[string]string `yaml:"params"`
	// Rules are the group's own rules.
	Rules []Rule `yaml:"rules"`
	// MaxQPS is the queries a second each client of the group may send
	// (a token bucket one second deep); beyond it REFUSED, "rate
	// limited". 0 is no limit.
	MaxQPS int `yaml:"max_qps"`
	// MaxInflight is the queries of each client of the group worked on at
	// once; beyond it REFUSED, "rate limited". 0 is no limit.
	MaxInflight int `yaml:"max_inflight"`
}

// Rule is one user rule.
type Rule struct {
	Name string `yaml:"name"`
	// FQDN patterns: exact names, "*.suffix" or "pre*.suffix".
	FQDN []string `yaml:"fqdn"`
	// Ports as tcp/443, udp/123 or tcp/8000-8100.
	Ports []string `yaml:"ports"`
	// PrivateAnswers is withhold (private, loopback, link-local and other
	// internal addresses are taken out of answers: DNS rebinding) or allow
	// (for names that resolve to private endpoints, such as Azure Private
	// Link).
	PrivateAnswers string `yaml:"private_answers"`
	// CNAMETargets is any, or strict: every CNAME target of an answer
	// must then match one of Via, or the rule does not grant the answer.
	CNAMETargets string `yaml:"cname_targets"`
	// Via are the patterns (the fqdn syntax) chain targets must match
	// with cname_targets: strict, e.g. "*.akamaiedge.net".
	Via []string `yaml:"via"`
	// Static opens service tags' or your own prefixes on Ports, without
	// DNS (static.go); a rule may have it instead of fqdn.
	Static *Static `yaml:"static"`
	// Verify false opts the rule out of enforcer.verify (a device that
	// sends no server name); unset is true.
	Verify *bool `yaml:"verify"`
	// TLSPorts are TCP ports verified for this rule beyond the default
	// ones (verify.go).
	TLSPorts []int `yaml:"tls_ports"`
}

// Log is the log section.
type Log struct {
	// Format is text or json.
	Format string `yaml:"format"`
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
}
