package upstream

import (
	"encoding/binary"
	"math/rand/v2"
	"strings"

	"github.com/miekg/dns"
)

const headerLen = 12

// Reasons a reply is skipped, the label values of the skipped-replies
// metric. A bounded set: one per check.
const (
	SkipMalformed = "malformed" // not a DNS message
	SkipID        = "id"        // another query's ID
	SkipQR        = "qr"        // QR=0: a query, not a reply
	SkipOpcode    = "opcode"    // not a reply to a standard query
	SkipRcode     = "rcode"     // an rcode no reply to a query carries
	SkipQuestion  = "question"  // another question: name, type or class
	SkipCase      = "case"      // the name in another case than sent (0x20)
)

// SkipReasons lists every reason, for metrics that show zeros.
var SkipReasons = []string{SkipMalformed, SkipID, SkipQR, SkipOpcode, SkipRcode, SkipQuestion, SkipCase}

// check reads wire as the reply to the query with id and question q,
// the name exactly as sent. It returns the message, or why it is not the
// reply. foldCase accepts the name in any case, for upstreams that do not
// echo the case they were sent. The header is checked on the wire before
// anything is unpacked, so that a flood of wrong IDs costs little.
func check(wire []byte, id uint16, q dns.Question, foldCase bool) (*dns.Msg, string) {
	if len(wire) < headerLen {
		return nil, SkipMalformed
	}
	if binary.BigEndian.Uint16(wire) != id {
		return nil, SkipID
	}
	if wire[2]&0x80 == 0 {
		return nil, SkipQR
	}
	if (wire[2]>>3)&0x0f != dns.OpcodeQuery {
		return nil, SkipOpcode
	}
	m := new(dns.Msg)
	if err := m.Unpack(wire); err != nil {
		return nil, SkipMalformed
	}
	switch m.Rcode {
	case dns.RcodeSuccess, dns.RcodeFormatError, dns.RcodeServerFailure, dns.RcodeNameError,
		dns.RcodeNotImplemented, dns.RcodeRefused:
	default:
		// Update, TSIG and EDNS version codes answer nothing fqdngate
		// asked.
		return nil, SkipRcode
	}
	if len(m.Question) != 1 {
		return nil, SkipQuestion
	}
	rq := m.Question[0]
	if rq.Qtype != q.Qtype || rq.Qclass != q.Qclass {
		return nil, SkipQuestion
	}
	if rq.Name != q.Name {
		if !strings.EqualFold(rq.Name, q.Name) {
			return nil, SkipQuestion
		}
		if !foldCase {
			return nil, SkipCase
		}
	}
	return m, ""
}

// describe says what a skip reason means, for the error of an exchange
// that timed out after skipping replies.
func describe(reason string) string {
	switch reason {
	case SkipCase:
		return "replies with the query name in another case than sent: the upstream does not echo the case of the question (0x20); if it never does, set upstream_case_randomization: false"
	case SkipID:
		return "replies with another query's ID (spoofed or late)"
	case SkipQR:
		return "messages that are not replies (QR=0)"
	case SkipOpcode:
		return "replies to another opcode"
	case SkipRcode:
		return "replies with an rcode no answer to a query carries"
	case SkipQuestion:
		return "replies to another question"
	}
	return "messages that are not DNS"
}

// randomCase is name with each letter's case chosen at random (DNS 0x20,
// draft-vixie-dnsext-dns0x20): an off-path attacker must guess it as
// well as the ID and the source port, a bit more per letter.
func randomCase(name string) string {
	b := []byte(name)
	var bits uint64
	left := 0
	for i, c := range b {
		lower := c | 0x20
		if lower < 'a' || lower > 'z' {
			continue
		}
		if left == 0 {
			bits, left = rand.Uint64(), 64
		}
		if bits&1 == 1 {
			b[i] = lower &^ 0x20
		} else {
			b[i] = lower
		}
		bits >>= 1
		left--
	}
	return string(b)
}

// restoreCase puts the name the query was made with back where the
// upstream echoed the randomised one: the question and the owners of the
// records (the answer's are compressed to the question's name, so the
// wire's question is patched too). Everything after the pool compares
// names without case; this keeps what clients and the cache see the same
// as without randomisation.
func restoreCase(r *Reply, sent, orig string) {
	if sent == orig {
		return
	}
	r.Msg.Question[0].Name = orig
	for _, sec := range [][]dns.RR{r.Msg.Answer, r.Msg.Ns, r.Msg.Extra} {
		for _, rr := range sec {
			if h := rr.Header(); h.Name == sent {
				h.Name = orig
			}
		}
	}
	if r.Wire != nil {
		// Same length: only letters' case differs.
		if _, err := dns.PackDomainName(orig, r.Wire, headerLen, nil, false); err != nil {
			r.Wire = nil // cannot happen; the cache packs Msg instead
		}
	}
}

// newID is a query ID from the runtime's ChaCha8 generator: unpredictable
// without the read from crypto/rand that dns.Id costs per query.
func newID() uint16 { return uint16(rand.Uint32()) }
