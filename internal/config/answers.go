package config

import (
	"fmt"
	"io"

	"github.com/fqdngate/fqdngate/internal/policy"
)

// applyAnswerDefaults fills each rule's answer settings. ServeStale's
// default is its zero value.
func (c *Config) applyAnswerDefaults() {
	for gi := range c.Clients {
		for ri := range c.Clients[gi].Rules {
			r := &c.Clients[gi].Rules[ri]
			setDefault(&r.PrivateAnswers, DefaultPrivateAnswers)
			setDefault(&r.CNAMETargets, DefaultCNAMETargets)
		}
	}
}

func (c *Config) validateServeStale(col *collector) {
	switch {
	case c.ServeStale < 0 || c.ServeStale > MaxServeStale:
		col.add(path{"serve_stale"}, "%s is outside 0..%s", c.ServeStale, MaxServeStale)
	case c.ServeStale > 0 && c.CacheSize == 0:
		col.add(path{"serve_stale"}, "needs the answer cache: cache_size is 0")
	}
}

// answerRules validates a rule's private_answers, cname_targets and via
// (rp is the rule's path) and returns them for the policy. via without
// strict is an error, not a warning: a pin that pins nothing would let an
// operator believe the CDN is pinned while every chain is accepted.
func answerRules(col *collector, rp path, r Rule) policy.AnswerRules {
	var a policy.AnswerRules
	oneOf(col, rp.with("private_answers"), r.PrivateAnswers, "withhold", "allow")
	a.AllowPrivate = r.PrivateAnswers == "allow"
	oneOf(col, rp.with("cname_targets"), r.CNAMETargets, "any", "strict")
	a.CNAMEStrict = r.CNAMETargets == "strict"
	switch {
	case a.CNAMEStrict && len(r.Via) == 0:
		col.add(rp.with("via"), "required with cname_targets: strict: the patterns CNAME targets must match, e.g. \"*.akamaiedge.net\"")
	case !a.CNAMEStrict && len(r.Via) > 0 && r.CNAMETargets == "any":
		col.add(rp.with("via"), "has no effect without cname_targets: strict; add it, or remove via")
	}
	for vi, s := range r.Via {
		pat, err := policy.ParsePattern(s)
		if err != nil {
			col.add(rp.with("via", vi), "%v", err)
			continue
		}
		a.Via = append(a.Via, pat)
	}
	return a
}

func serveStale(c *Config) string {
	if c.ServeStale == 0 {
		return "off (no upstream answer: SERVFAIL)"
	}
	return fmt.Sprintf("up to %s past expiry when no upstream answers, with TTL 30s (RFC 8767), installed", c.ServeStale)
}

// answerDefaults is the effective printout's line for rules that keep
// the defaults; writeAnswerRules names the others.
const answerDefaults = "private addresses withheld, any CNAME target (unless a rule below says otherwise)"

// writeAnswerRules prints, after the group's rule table, what each rule
// that does not keep the defaults lets answers hold.
func writeAnswerRules(w io.Writer, rules []*policy.Rule) {
	for _, r := range rules {
		a := r.Answers
		if !a.AllowPrivate && !a.CNAMEStrict {
			continue
		}
		private := "private addresses withheld"
		if a.AllowPrivate {
			private = "private addresses allowed"
		}
		chain := "any CNAME target"
		if a.CNAMEStrict {
			chain = "CNAME targets only via " + joinStringers(a.Via)
		}
		fmt.Fprintf(w, "  rule %s answers: %s, %s\n", r.Name, private, chain)
	}
}
