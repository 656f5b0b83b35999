package dnsproxy

import (
	"time"

	"github.com/miekg/dns"
)

// StaleTTL is the TTL of a stale answer, RFC 8767's recommendation: short
// enough that clients come back soon for a fresh answer, long enough not
// to ask again at once while the upstreams are down.
const StaleTTL = 30

// KeepStale makes the cache keep answers up to d past their expiry, for
// Stale. Call it before the cache is used; zero (the default) keeps none.
func (c *Cache) KeepStale(d time.Duration) {
	if c != nil {
		c.stale = max(d, 0)
	}
}

// Stale returns the expired answer to q if it expired less than the stale
// window ago, with every TTL set to StaleTTL, or nil. Only for when no
// upstream answered: a live answer is lookup's.
func (c *Cache) Stale(q *dns.Msg, now time.Time) *dns.Msg {
	if c == nil || c.stale <= 0 {
		return nil
	}
	k := keyOf(q)
	s := c.shard(k)
	s.mu.Lock()
	e, ok := s.m[k]
	if ok && !now.Before(e.expires.Add(c.stale)) {
		delete(s.m, k)
		ok = false
	}
	s.mu.Unlock()
	if !ok {
		return nil
	}
	m := new(dns.Msg)
	if err := m.Unpack(e.wire); err != nil {
		return nil // cannot happen: it was unpacked before it was stored
	}
	for _, sec := range [][]dns.RR{m.Answer, m.Ns} {
		for _, rr := range sec {
			rr.Header().Ttl = StaleTTL
		}
	}
	return m
}

// serveStale is the reply to uq when no upstream answered (err): the
// stale cached answer, if there is one within the window, else err.
func (h *Handler) serveStale(uq *dns.Msg, now time.Time, err error, out *Outcome) (Reply, error) {
	m := h.opts.Cache.Stale(uq, now)
	if m == nil {
		return Reply{}, err
	}
	out.Stale = true
	h.stats.Stale.Add(1)
	h.log.Warn("no upstream answered; serving a stale answer", "qname", uq.Question[0].Name, "err", err)
	return Reply{Msg: m}, nil
}

// staleEDE marks a stale answer for the client (RFC 8914 code 3), when it
// speaks EDNS; clientReply has given the reply fqdngate's OPT then.
func staleEDE(m *dns.Msg) {
	if opt := m.IsEdns0(); opt != nil {
		opt.Option = append(opt.Option, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeStaleAnswer, ExtraText: "fqdngate: no upstream answered; served stale"})
	}
}
