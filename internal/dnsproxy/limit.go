package dnsproxy

import "github.com/miekg/dns"

// ExtendedErrorRateLimited is the Extended DNS Error of a query refused
// for its client's max_qps or max_inflight. RFC 8914 has no code for rate
// limiting; Prohibited (18) is the one about the client rather than the
// name (its examples include local policy on who may ask), where Blocked
// and Filtered speak of the domain, as if another name would do. The
// extra text says "rate limited".
const ExtendedErrorRateLimited = dns.ExtendedErrorCodeProhibited
