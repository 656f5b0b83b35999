// Package feeds tells the firewall a site already has what fqdngate
// answered (DESIGN section 12), live, from the ledger.
//
// Pull: an http.Handler for the API listener serves, per client group
// and optionally per rule and family, what is live now:
//
//	GET /feeds/v1/ip?client=G[&rule=R][&family=4|6]   PAN-OS EDL IP list, FortiGate IP threat feed
//	GET /feeds/v1/domain?client=G                     PAN-OS EDL domain list of the group's patterns
//	GET /feeds/v1/checkpoint?client=G                 Check Point Generic Data Center JSON
//
// A body depends only on the set it lists (sorted, no lifetimes), so its
// ETag answers If-None-Match with 304 until the set changes. Every feed
// needs a token of its own (HTTP Basic password or Bearer): the handler
// authenticates itself, whatever the listener in front of it does.
//
// Push (push.go): every answer the DNS handler releases, cache hits too,
// is queued for each configured firewall (PAN-OS User-ID API, FortiGate
// external-resource/dynamic), batched, retried with backoff, and resent in
// full after the firewall was unreachable. The queue is bounded and never
// blocks DNS, unless a target has hold: true; then the answer waits,
// within enforcer.hold, for that firewall's acknowledgement (hold.go).
package feeds
