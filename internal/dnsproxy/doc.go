// Package dnsproxy is fqdngate's DNS side: the UDP and TCP listeners and
// the path of one query (the upstreams are internal/upstream's):
//
//	validate ─▶ client group ─▶ policy ─deny─▶ NXDOMAIN, built here; nothing goes upstream
//	                              │allow
//	                              ▼
//	                     upstream exchange (failover, TCP on truncation)
//	                              ▼
//	                     walk: CNAME chain → A/AAAA (+ HTTPS/SVCB hints); strip the rest
//	                     (chain outside a strict rule's via ─▶ deny; internal addresses
//	                     withheld unless the rule allows them: answers.go; no upstream
//	                     answered ─▶ a stale answer, with serve_stale: stale.go)
//	                              ▼
//	                     enforcer.Allow (bounded by the hold budget) ─fail─▶ SERVFAIL
//	                              ▼
//	                     ledger.Record, then the answer is released
//
// The answer never leaves before the kernel holds its addresses for this
// client (invariant 1); a denied name never reaches an upstream in enforce
// mode (invariant 2); sources outside every client group are refused
// (invariant 7).
package dnsproxy
