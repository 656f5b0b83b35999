package dnsproxy

import (
	"net/netip"
	"slices"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// What a rule lets an answer hold (policy.AnswerRules), applied to the
// walk of each answer before anything is installed or released:
//
//   - cname_targets: strict. Only the decision's rules whose via patterns
//     match every target of the chain grant the answer. With none left the
//     client gets the deny response, with an Extended DNS Error naming the
//     first target no rule allows (observe mode: a would-deny, answered,
//     nothing installed). The upstream was asked: the chain is only known
//     from its answer, and the name itself is allowed.
//   - private_answers. Internal addresses (isInternal) are taken out of
//     the walk, and so by strip out of the reply, unless a rule that
//     grants the answer allows them. With several granting rules of which
//     only some allow them, the internal addresses are installed and
//     recorded for those rules and their ports only, the others' for all
//     (splitInternal): each address is open exactly on the ports of the
//     rules that grant it, and the ledger names those rules.
//
// A prepared reply (a cached answer replayed) was stripped for the rules
// of the decision it was made for; it is replayed only to a decision that
// keeps the same addresses (answerVariant), and the chain is vetted again
// for every replay, as the rules may be another group's.

// vetChain returns the reply for an answer whose chain no rule of dec
// grants (cname_targets: strict), nil when the answer may go on.
func (h *Handler) vetChain(req *dns.Msg, client netip.Addr, dec policy.Decision, walked Walked, out *Outcome) *dns.Msg {
	if !dec.Allowed() {
		return nil
	}
	narrowed, refused := dec.ForChain(walked.Chain)
	if narrowed.Allowed() {
		return nil
	}
	h.stats.CNAMENotVia.Add(1)
	q := req.Question[0]
	if h.opts.Observe {
		h.stats.WouldDeny.Add(1)
		out.Decision = DecisionWouldDeny
		h.log.Info("would deny: CNAME target not in the rules' via", "client", client, "group", dec.Group.Name,
			"qname", q.Name, "qtype", dns.TypeToString[q.Qtype], "target", refused, "reason", DecisionCNAMENotVia)
		return nil
	}
	out.Decision = DecisionCNAMENotVia
	h.log.Info("denied: CNAME target not in the rules' via", "client", client, "group", dec.Group.Name,
		"qname", q.Name, "qtype", dns.TypeToString[q.Qtype], "target", refused, "reason", DecisionCNAMENotVia)
	return reply(req, h.opts.DenyRcode, dns.ExtendedErrorCodeBlocked, "fqdngate: CNAME target "+refused+" not allowed by the rule's via")
}

// withhold takes the internal addresses out of walked unless a rule that
// grants the answer allows them. Every answer, allowed or observe-mode
// would-deny: it is a filter of what the client is told.
func (h *Handler) withhold(client netip.Addr, dec policy.Decision, walked *Walked, out *Outcome) {
	if narrowed, _ := dec.ForChain(walked.Chain); narrowed.AllowsPrivate() {
		return
	}
	n := walked.withholdInternal()
	if n == 0 {
		return
	}
	out.Withheld = n
	h.stats.Withheld.Add(uint64(n))
	h.log.Debug("internal addresses withheld from the answer: allow them with private_answers: allow on the rule",
		"client", client, "qname", walked.Name, "withheld", n)
}

// variantInternal marks a prepared reply whose rules let internal
// addresses through; the next bit after prepared.go's.
const variantInternal = variantEDNS << 1

// answerVariant is what a prepared reply made from walked depends on in
// the decision: whether internal addresses were let through.
func answerVariant(dec policy.Decision, walked Walked) variant {
	if narrowed, _ := dec.ForChain(walked.Chain); narrowed.AllowsPrivate() {
		return variantInternal
	}
	return 0
}

// splitInternal divides a granted answer into the parts the ledger
// records and the kernel holds, into buf: one answer, unless only some of
// dec's rules allow internal addresses and the answer has some; then its
// internal addresses are a part of their own, with those rules' names and
// ports.
func splitInternal(buf *[2]ledger.Answer, a ledger.Answer, dec policy.Decision) []ledger.Answer {
	buf[0] = a
	if !dec.AllowsPrivate() {
		return buf[:1] // withhold took them out
	}
	priv, all := dec.PrivateOnly()
	if all {
		return buf[:1]
	}
	var public, internal []netip.Addr
	for _, addr := range a.Addrs {
		if isInternal(addr) {
			internal = append(internal, addr)
		} else {
			public = append(public, addr)
		}
	}
	if len(internal) == 0 {
		return buf[:1]
	}
	in := a
	in.Addrs, in.Rules, in.Ports = internal, priv.RuleNames(), priv.Ports()
	if len(public) == 0 {
		buf[0] = in
		return buf[:1]
	}
	buf[0].Addrs = public
	buf[1] = in
	return buf[:2]
}

// record records an answer's parts and returns the elements to revoke:
// those of evicted entries, less any that a part holds (one part's
// eviction may take an entry that a later part then records again).
func (h *Handler) record(now time.Time, parts []ledger.Answer) []ledger.Elem {
	revoke := h.ledger.Record(now, parts[0])
	if len(parts) == 1 {
		return revoke
	}
	for _, p := range parts[1:] {
		revoke = append(revoke, h.ledger.Record(now, p)...)
	}
	var held []ledger.Elem
	for _, p := range parts {
		for _, g := range h.ledger.GrantsOf(p) {
			held = append(held, g.Elem)
		}
	}
	return slices.DeleteFunc(revoke, func(e ledger.Elem) bool { return slices.Contains(held, e) })
}

// Granted says what policy p grants an entry the ledger holds, by the
// steps a fresh answer takes: the rules that match the name and whose via
// the chain passes, and for an internal address only those of them that
// allow private answers. A reload applies it to everything clients were
// told, so that turning a rule's private_answers to withhold, or its
// cname_targets to strict, also withdraws what was installed before.
func Granted(p *policy.Policy, t ledger.Told) ([]policy.PortRange, []string, bool) {
	d, _ := p.Match(t.Client, t.Name).ForChain(t.Chain)
	if !d.Allowed() {
		return nil, nil, false
	}
	if isInternal(t.Addr) {
		if !d.AllowsPrivate() {
			return nil, nil, false
		}
		d, _ = d.PrivateOnly()
	}
	return d.Ports(), d.RuleNames(), true
}
