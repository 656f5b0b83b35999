package dnsproxy

import "github.com/fqdngate/fqdngate/internal/upstream"

// Reply is an upstream's answer (the upstream package forwards queries).
type Reply = upstream.Reply

// upstreamUDPSize is the EDNS buffer fqdngate offers upstreams and
// clients: the DNS flag day 2020 value, which avoids IP fragmentation.
const upstreamUDPSize = 1232

const dnsHeaderLen = 12
