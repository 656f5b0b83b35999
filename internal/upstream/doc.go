// Package upstream is fqdngate's way to the resolvers it forwards allowed
// queries to. A Proxy is one upstream: its transport (UDP with TCP on
// truncation, or DNS over TLS) and its health. A Policy orders the
// proxies for a query. A Pool puts them together: one overall deadline
// per query, replies checked before they are believed, failover on
// SERVFAIL and REFUSED, and upstreams that stopped answering skipped until
// a background probe finds them back.
//
// The split follows CoreDNS (plugin/pkg/proxy for the connection side,
// plugin/forward's policy for selection), so that selection can change
// without touching the transport.
//
// The package knows nothing of fqdngate's configuration: config parses
// upstream entries with ParseSpec and hands the pool a []Spec.
package upstream
