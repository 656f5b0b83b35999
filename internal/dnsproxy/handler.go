package dnsproxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/time/rate"

	"github.com/fqdngate/fqdngate/internal/clientlimit"
	"github.com/fqdngate/fqdngate/internal/enforce"
	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// Options set the handler's behaviour; they come from the configuration.
type Options struct {
	// Observe answers denied names too (logged as would-deny).
	Observe bool
	// DenyRcode is dns.RcodeNameError or dns.RcodeRefused.
	DenyRcode int
	MinTTL    time.Duration
	MaxTTL    time.Duration
	Grace     time.Duration
	// MaxInflight bounds the queries being worked on at once.
	MaxInflight int
	// Global is scope global: elements are not keyed by client, so
	// addresses of both families can be enforced whatever the query came
	// over.
	Global bool
	// Cache, if not nil, answers repeated questions without the upstream.
	Cache *Cache
	// ServeStale keeps cached answers this long past expiry, served (and
	// installed) when no upstream answers (RFC 8767); zero is off.
	ServeStale time.Duration
	// Limits, if not nil, admits each client's queries (clients[].max_qps
	// and max_inflight).
	Limits *clientlimit.Limiter
	// StripECH removes the ech parameter of HTTPS/SVCB answers
	// (enforcer.verify on, ech.go).
	StripECH bool
	// Node is the cluster node this handler answers as (config
	// cluster.node), recorded with every answer; "" outside a cluster.
	Node string
}

// Decisions a query can end in, as Outcome.Decision.
const (
	DecisionAllowed      = "allowed"
	DecisionDenied       = "denied"
	DecisionWouldDeny    = "would-deny"
	DecisionRefused      = "refused"
	DecisionMalformed    = "malformed"
	DecisionBusy         = "busy"
	DecisionUpstreamFail = "upstream-fail"
	DecisionEnforceFail  = "enforce-fail"
	// DecisionWithdrawn: a reload withdrew the name while it was
	// resolved; the answer was withheld (SERVFAIL) and nothing stays open.
	DecisionWithdrawn = "withdrawn"
	// DecisionCNAMENotVia: allowed name, but its chain left every via.
	DecisionCNAMENotVia = "cname-not-via"
	DecisionRateLimited = "rate-limited"
)

// Outcome is what became of one query, for metrics and the event log.
type Outcome struct {
	Time     time.Time
	Client   netip.Addr
	Group    string // empty when the client is in no group
	Name     string // the question's name, as asked
	QType    uint16
	Decision string
	// Answer is set when addresses were learnt (allowed, installed).
	Answer *ledger.Answer
	// Install is how long the kernel took to acknowledge the answer's
	// elements (answer received → kernel ack); zero when none.
	Install time.Duration
	// Cached is true when the answer came from the cache.
	Cached bool
	// Stale is true when it was a stale answer served because no upstream
	// answered (serve_stale).
	Stale bool
	// Withheld is how many internal addresses were taken out (private_answers).
	Withheld int
}

// Observer hears every query's outcome. It is called on the query's
// goroutine before the answer is released, so it must not block.
type Observer interface {
	Query(Outcome)
}

type nopObserver struct{}

func (nopObserver) Query(Outcome) {}

// Upstream is what the handler needs of a Pool.
type Upstream interface {
	Exchange(ctx context.Context, q *dns.Msg) (Reply, error)
}

// Handler serves DNS for the clients of a policy.
type Handler struct {
	policy   atomic.Pointer[policy.Policy]
	upstream Upstream
	ledger   *ledger.Ledger
	enforcer enforce.Enforcer
	// holder is enforcer as an enforce.Holder, nil when it is not one.
	holder   enforce.Holder
	opts     Options
	log      *slog.Logger
	now      func() time.Time
	inflight chan struct{}
	stats    Stats
	obs      Observer
	// logs bounds the log lines of single queries (denied, failed): a
	// device asking random denied names must not flood the log. Counts
	// are always kept; LogsSuppressed counts the lines left out.
	logs *rate.Limiter
}

// Budget of per-query log lines: the same as the drop log's (monitor).
const (
	queryLogsPerSec = 50
	queryLogsBurst  = 200
)

// Stats counts outcomes; read with Snapshot.
type Stats struct {
	Allowed, Denied, WouldDeny, Refused, Malformed, UpstreamFail, EnforceFail, Busy, Withdrawn atomic.Uint64
	// CNAMENotVia, Stale and Withheld (addresses) count answers.go's work.
	CNAMENotVia, Stale, Withheld atomic.Uint64
	// LogsSuppressed counts per-query log lines left out for the budget.
	LogsSuppressed atomic.Uint64
	// RateLimited counts queries refused by Limits; RevokeDropped evicted
	// elements not removed at once (revokeEvicted).
	RateLimited, RevokeDropped atomic.Uint64
}

// NewHandler wires a handler. now may be nil for time.Now.
func NewHandler(p *policy.Policy, up Upstream, l *ledger.Ledger, e enforce.Enforcer, o Options, log *slog.Logger, now func() time.Time) *Handler {
	if now == nil {
		now = time.Now
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = 1024
	}
	if o.DenyRcode == 0 {
		o.DenyRcode = dns.RcodeNameError
	}
	h := &Handler{upstream: up, ledger: l, enforcer: e, opts: o, log: log, now: now,
		inflight: make(chan struct{}, o.MaxInflight), obs: nopObserver{},
		logs: rate.NewLimiter(queryLogsPerSec, queryLogsBurst)}
	h.holder, _ = e.(enforce.Holder)
	o.Cache.KeepStale(o.ServeStale)
	h.policy.Store(p)
	return h
}

// SetObserver sets who hears the outcomes; call it before serving.
func (h *Handler) SetObserver(o Observer) { h.obs = o }

// SetPolicy swaps the policy; queries in flight finish with the old one.
func (h *Handler) SetPolicy(p *policy.Policy) { h.policy.Store(p) }

// Stats returns the handler's counters.
func (h *Handler) Stats() *Stats { return &h.stats }

// ServeDNS implements dns.Handler.
func (h *Handler) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	var client netip.Addr
	uw, udp := w.(*udpWriter)
	if udp {
		client = uw.client()
	} else {
		client = addrOf(w.RemoteAddr())
		_, udp = w.RemoteAddr().(*net.UDPAddr)
	}
	var resp *dns.Msg
	var wire []byte
	select {
	case h.inflight <- struct{}{}:
		var bp *[]byte
		if udp && uw != nil {
			bp = getBuf()
			defer putBuf(bp)
		}
		resp, wire = h.serve(context.Background(), client, req, bp)
		<-h.inflight
	default:
		// Full: answer at once rather than queue without bound.
		h.stats.Busy.Add(1)
		h.obs.Query(Outcome{Time: h.now(), Client: client, Decision: DecisionBusy})
		resp = reply(req, dns.RcodeServerFailure, dns.ExtendedErrorCodeOther, "fqdngate: busy")
	}
	size := dns.MaxMsgSize // TCP: no truncation
	if udp {
		size = clientUDPSize(req)
	}
	if wire != nil && len(wire) <= size {
		_, _ = w.Write(wire)
		return
	}
	if resp == nil {
		resp = unpackReply(req, wire)
	}
	if udp {
		resp.Truncate(size)
	}
	_ = w.WriteMsg(resp)
}

// Resolve answers one query from client. It never returns nil.
func (h *Handler) Resolve(ctx context.Context, client netip.Addr, req *dns.Msg) *dns.Msg {
	resp, wire := h.serve(ctx, client, req, nil)
	if resp == nil {
		resp = unpackReply(req, wire)
	}
	return resp
}

// unpackReply is a reply the handler made in wire form as a message.
func unpackReply(req *dns.Msg, wire []byte) *dns.Msg {
	m := new(dns.Msg)
	if err := m.Unpack(wire); err != nil {
		// Cannot happen: fqdngate packed it.
		return reply(req, dns.RcodeServerFailure, dns.ExtendedErrorCodeOther, "fqdngate: reply not readable")
	}
	return m
}

// serve answers one query, as a message or, for a reply made from a
// prepared one (or one that was just packed), as wire; buf, if not nil,
// is where a prepared reply is copied. It tells the observer.
func (h *Handler) serve(ctx context.Context, client netip.Addr, req *dns.Msg, buf *[]byte) (*dns.Msg, []byte) {
	out := Outcome{Client: client}
	resp, wire := h.resolve(ctx, client, req, &out, buf)
	out.Time = h.now()
	if len(req.Question) > 0 {
		out.Name, out.QType = req.Question[0].Name, req.Question[0].Qtype
	}
	h.obs.Query(out)
	return resp, wire
}

// resolve is the query path, top to bottom; it fills out as it goes. It
// returns the reply as a message, or as wire when that is at hand (step 4
// and step 8 of a cached answer).
func (h *Handler) resolve(ctx context.Context, client netip.Addr, req *dns.Msg, out *Outcome, buf *[]byte) (*dns.Msg, []byte) {
	// 1. Only well-formed queries: one question, class IN, opcode QUERY.
	if rcode, why := validate(req); rcode != dns.RcodeSuccess {
		h.stats.Malformed.Add(1)
		out.Decision = DecisionMalformed
		return reply(req, rcode, dns.ExtendedErrorCodeOther, why), nil
	}
	q := req.Question[0]

	// 2. No open resolver: a source outside every client group is refused.
	pol := h.policy.Load()
	dec := pol.Match(client, q.Name)
	if dec.Group == nil {
		h.stats.Refused.Add(1)
		out.Decision = DecisionRefused
		h.log.Debug("refused: client in no group", "client", client, "qname", q.Name)
		return reply(req, dns.RcodeRefused, dns.ExtendedErrorCodeProhibited, "fqdngate: client not served"), nil
	}

	out.Group = dec.Group.Name
	// A client over its group's max_qps or max_inflight is refused before
	// any work is spent on it (DESIGN section 16).
	if h.opts.Limits != nil {
		ticket, limit := h.opts.Limits.Admit(h.now(), client, dec.Group.Name)
		if limit != "" {
			h.stats.RateLimited.Add(1)
			out.Decision = DecisionRateLimited
			return reply(req, dns.RcodeRefused, ExtendedErrorRateLimited, "fqdngate: rate limited ("+string(limit)+")"), nil
		}
		defer h.opts.Limits.Done(ticket)
	}

	// 3. Denied names are answered here and never leave (enforce mode).
	out.Decision = DecisionAllowed
	if !dec.Allowed() {
		if !h.opts.Observe {
			h.stats.Denied.Add(1)
			out.Decision = DecisionDenied
			h.logQuery(slog.LevelInfo, "denied", "client", client, "group", dec.Group.Name, "qname", q.Name, "qtype", dns.TypeToString[q.Qtype])
			return reply(req, h.opts.DenyRcode, dns.ExtendedErrorCodeBlocked, "fqdngate: name not allowed"), nil
		}
		h.stats.WouldDeny.Add(1)
		out.Decision = DecisionWouldDeny
		h.logQuery(slog.LevelInfo, "would deny", "client", client, "group", dec.Group.Name, "qname", q.Name, "qtype", dns.TypeToString[q.Qtype])
	}

	// 4. Ask the cache, else an upstream (and cache its answer). A cached
	// answer that the last client of this kind was already told is
	// replayed from that reply, and only installed and recorded.
	uq := upstreamQuery(req)
	var up netip.AddrPort
	now := h.now()
	kind := variantOf(client, dec.Allowed(), req)
	var resp *dns.Msg
	entry := h.opts.Cache.lookup(uq, now)
	if entry != nil {
		out.Cached = true
		if p := entry.reply.Load(); p != nil && p.kind == kind|answerVariant(dec, p.walked) {
			if deny := h.vetChain(req, client, dec, p.walked, out); deny != nil {
				return deny, nil
			}
			if buf == nil {
				buf = new([]byte)
			}
			if wire, walked, ok := p.replay(*buf, req, entry.age(now)); ok {
				*buf = wire
				if !h.grant(ctx, pol, client, dec, q.Name, walked, out) {
					return withheld(req, out), nil
				}
				return nil, wire
			}
		}
		if resp = entry.message(now); resp == nil {
			entry, out.Cached = nil, false // cannot happen: ask upstream instead
		}
	}
	if resp == nil {
		rep, err := h.upstream.Exchange(ctx, uq)
		if err != nil {
			rep, err = h.serveStale(uq, now, err, out)
		}
		if err != nil {
			h.stats.UpstreamFail.Add(1)
			h.logQuery(slog.LevelWarn, "upstream failed", "client", client, "qname", q.Name, "err", err)
			out.Decision = DecisionUpstreamFail
			return reply(req, dns.RcodeServerFailure, dns.ExtendedErrorCodeNetworkError, "fqdngate: no upstream answered"), nil
		}
		resp, up = rep.Msg, rep.From
		wire := rep.Wire
		if clampTTLs(resp, h.opts.MaxTTL) {
			wire = nil // the cache packs what the client is told
		}
		if !out.Stale { // a stale answer stays as it is cached
			h.opts.Cache.Put(uq, resp, wire, now)
		}
	}

	// 5. Learn the chain and its addresses; drop addresses we cannot vouch for.
	walked := Walk(q.Name, resp.Answer)
	if deny := h.vetChain(req, client, dec, walked, out); deny != nil {
		return deny, nil
	}
	h.withhold(client, dec, &walked, out)
	if !h.opts.Global && dec.Allowed() {
		if n := walked.KeepFamily(client.Is4()); n > 0 {
			h.log.Debug("addresses of the other family withheld: ask over that family to use them",
				"client", client, "qname", q.Name, "withheld", n)
		}
	}
	strip(resp, walked)
	if h.opts.StripECH {
		stripECH(resp)
	}

	// 6. Rule before answer, and 7. record who was told what.
	if !h.grant(ctx, pol, client, dec, q.Name, walked, out) {
		return withheld(req, out), nil
	}
	if h.log.Enabled(ctx, slog.LevelDebug) {
		// Guarded: the arguments alone were two allocations of every
		// answer, logged or not.
		h.log.Debug("answered", "client", client, "qname", q.Name, "qtype", dns.TypeToString[q.Qtype],
			"rcode", dns.RcodeToString[resp.Rcode], "upstream", up, "chain", walked.Chain, "addrs", walked.Addrs)
	}

	// 8. Release, with the client's ID, question and EDNS. A reply made
	// from a cached answer is kept for the next client of this kind.
	resp = clientReply(req, resp)
	if out.Stale {
		staleEDE(resp)
	}
	if entry != nil {
		if wire, err := resp.Pack(); err == nil {
			if p := prepare(wire, entry.age(now), walked, kind|answerVariant(dec, walked)); p != nil {
				entry.reply.Store(p)
			}
			return nil, wire
		}
	}
	return resp, nil
}

// grant installs the addresses of an allowed answer for client, bounded
// by the hold budget, and records them in the ledger (steps 6 and 7). It
// returns false, with the outcome set, when the kernel did not take them
// or a reload withdrew the name meanwhile: the answer must not be
// released. pol is the policy dec came from.
func (h *Handler) grant(ctx context.Context, pol *policy.Policy, client netip.Addr, dec policy.Decision, qname string, walked Walked, out *Outcome) bool {
	// Only the rules whose via the chain passes grant it (cname_targets);
	// none left is an observe-mode would-deny (vetChain denied it else).
	if dec, _ = dec.ForChain(walked.Chain); !dec.Allowed() {
		return true
	}
	if len(walked.Addrs) == 0 {
		h.stats.Allowed.Add(1)
		return true
	}
	ttl := min(time.Duration(walked.MinTTL)*time.Second, h.opts.MaxTTL)
	now := h.now()
	name, _ := policy.NormalizeName(qname)
	chain := make([]string, len(walked.Chain))
	for i, c := range walked.Chain {
		chain[i], _ = policy.NormalizeName(c)
	}
	ans := ledger.Answer{
		Client: client, Group: dec.Group.Name, Node: h.opts.Node, Name: name, Chain: chain,
		Addrs: walked.Addrs, Rules: dec.RuleNames(), Ports: dec.Ports(), TTL: ttl,
		Expires: now.Add(max(ttl, h.opts.MinTTL) + h.opts.Grace),
	}
	var split [2]ledger.Answer
	parts := splitInternal(&split, ans, dec)
	err := h.install(ctx, parts...)
	out.Install = h.now().Sub(now)
	if err != nil {
		h.stats.EnforceFail.Add(1)
		out.Decision = DecisionEnforceFail
		h.logQuery(slog.LevelError, "rule not installed; answer withheld", "client", client, "qname", qname, "err", err)
		return false
	}
	if revoke := h.record(now, parts); len(revoke) > 0 {
		h.revokeEvicted(ctx, revoke)
	}
	if cur := h.policy.Load(); cur != pol && !h.stillGranted(ctx, cur, ans, walked.Chain) {
		h.stats.Withdrawn.Add(1)
		out.Decision = DecisionWithdrawn
		return false
	}
	h.stats.Allowed.Add(1)
	out.Answer = &ans
	return true
}

// stillGranted settles the race between a query and a reload. A reload
// swaps the policy first and then withdraws, from the ledger and the
// kernel, what the new policy no longer allows. A query that matched the
// old policy and recorded its answer after that walk would leave its
// name open: so every query reads the policy again after recording, and
// one that finds another policy checks its answer against it. Either the
// record came before the walk (the reload withdraws it) or the check here
// sees the new policy (the query withdraws itself): no order of the two
// leaves a withdrawn name open. An answer the new policy grants on other
// ports is withdrawn too and the client asks again, rather than keep
// ports the reload took away.
func (h *Handler) stillGranted(ctx context.Context, cur *policy.Policy, ans ledger.Answer, chain []string) bool {
	d, _ := cur.Match(ans.Client, ans.Name).ForChain(chain)
	if d.Allowed() && slices.Equal(d.Ports(), ans.Ports) {
		return true
	}
	if revoke := h.ledger.Withdraw(h.now(), ans.Client, ans.Name); len(revoke) > 0 {
		// Unlike an eviction's, this removal is waited for: it takes away
		// what a reload withdrew. It is rare (a reload racing a query)
		// and bounded.
		ctx, cancel := context.WithTimeout(ctx, withdrawWait)
		defer cancel()
		if err := h.enforcer.Revoke(ctx, revoke); err != nil {
			h.log.Warn("withdrawn addresses not removed; they expire on their own", "n", len(revoke), "err", err)
		}
	}
	h.log.Info("answer withheld: a reload withdrew the name while it was resolved", "client", ans.Client, "qname", ans.Name)
	return false
}

// logQuery logs a line about one query within the budget of such lines.
func (h *Handler) logQuery(level slog.Level, msg string, args ...any) {
	if !h.log.Enabled(context.Background(), level) {
		return
	}
	if !h.logs.AllowN(h.now(), 1) {
		h.stats.LogsSuppressed.Add(1)
		return
	}
	h.log.Log(context.Background(), level, msg, args...)
}

// withdrawWait bounds how long a query waits for the kernel to remove
// what it withdrew (stillGranted).
const withdrawWait = time.Second

// withheld is the reply to an allowed query whose answer must not be
// released (grant returned false).
func withheld(req *dns.Msg, out *Outcome) *dns.Msg {
	if out.Decision == DecisionWithdrawn {
		return reply(req, dns.RcodeServerFailure, dns.ExtendedErrorCodeOther, "fqdngate: policy reloaded, ask again")
	}
	return reply(req, dns.RcodeServerFailure, dns.ExtendedErrorCodeOther, "fqdngate: firewall rule not installed")
}

// install puts an answer's elements (of all its parts, in one request)
// into the kernel.
func (h *Handler) install(ctx context.Context, parts ...ledger.Answer) error {
	grants := h.ledger.GrantsOf(parts[0])
	for _, p := range parts[1:] {
		grants = append(grants, h.ledger.GrantsOf(p)...)
	}
	if h.holder != nil && h.holder.Holds(grants) {
		return nil
	}
	// The enforcer bounds the wait by its hold budget.
	if aa, ok := h.enforcer.(enforce.AnswerAllower); ok {
		return aa.AllowAnswer(ctx, grants, parts...)
	}
	return h.enforcer.Allow(ctx, grants)
}

// validate returns RcodeSuccess for a query fqdngate will work on.
func validate(req *dns.Msg) (int, string) {
	if rcode, why := checkEDNS(req); rcode != dns.RcodeSuccess && !req.Response {
		return rcode, why
	}
	switch {
	case req.Response:
		return dns.RcodeFormatError, "fqdngate: not a query"
	case req.Opcode != dns.OpcodeQuery:
		return dns.RcodeNotImplemented, "fqdngate: only standard queries"
	case len(req.Question) != 1:
		return dns.RcodeFormatError, "fqdngate: exactly one question"
	case req.Question[0].Qclass != dns.ClassINET:
		return dns.RcodeRefused, "fqdngate: class IN only"
	}
	switch req.Question[0].Qtype {
	case dns.TypeANY, dns.TypeAXFR, dns.TypeIXFR:
		return dns.RcodeNotImplemented, "fqdngate: ANY and zone transfers are not served"
	}
	return dns.RcodeSuccess, ""
}

// upstreamQuery is the client's question with our own EDNS: the client's
// DO bit is kept, the buffer size is ours.
func upstreamQuery(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	// Not SetQuestion: its ID comes from crypto/rand, and the pool sets
	// its own per attempt anyway.
	m.Question = []dns.Question{{Name: req.Question[0].Name, Qtype: req.Question[0].Qtype, Qclass: dns.ClassINET}}
	m.RecursionDesired = true
	m.CheckingDisabled = req.CheckingDisabled
	do := false
	if opt := req.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	m.SetEdns0(upstreamUDPSize, do)
	return m
}

// clientReply turns an upstream reply into the client's: the client's ID
// and question (its case, for 0x20), and EDNS only if the client used it.
// resp is changed in place: it is the query's own, unpacked from the
// upstream's reply or from the cache's wire copy.
func clientReply(req, resp *dns.Msg) *dns.Msg {
	out := resp
	out.Id = req.Id
	out.Question = req.Question
	out.Response = true
	out.RecursionDesired = req.RecursionDesired
	out.RecursionAvailable = true
	out.Authoritative = false
	extra := make([]dns.RR, 0, len(out.Extra))
	for _, rr := range out.Extra {
		if _, isOPT := rr.(*dns.OPT); !isOPT {
			extra = append(extra, rr)
		}
	}
	out.Extra = extra
	if opt := req.IsEdns0(); opt != nil {
		out.SetEdns0(upstreamUDPSize, opt.Do())
	}
	return out
}

// reply builds a local answer with an Extended DNS Error (RFC 8914) when
// the client speaks EDNS, so that `dig` shows why.
func reply(req *dns.Msg, rcode int, ede uint16, text string) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(req, rcode)
	m.RecursionAvailable = true
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(upstreamUDPSize, opt.Do())
		m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_EDE{InfoCode: ede, ExtraText: text})
	}
	return m
}

// clampTTLs lowers TTLs above maxTTL and reports whether it changed any.
func clampTTLs(m *dns.Msg, maxTTL time.Duration) bool {
	limit, changed := uint32(maxTTL/time.Second), false
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if h := rr.Header(); h.Rrtype != dns.TypeOPT && h.Ttl > limit {
				h.Ttl, changed = limit, true
			}
		}
	}
	return changed
}

func addrOf(a net.Addr) netip.Addr {
	switch v := a.(type) {
	case *net.UDPAddr:
		return v.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return v.AddrPort().Addr().Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// IsHoldTimeout reports whether err is the enforcer's hold timeout.
func IsHoldTimeout(err error) bool { return errors.Is(err, enforce.ErrHoldTimeout) }
