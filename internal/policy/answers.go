package policy

// AnswerRules are a rule's limits on the answers it grants: the addresses
// they may carry and the CNAME chain they may come through.
type AnswerRules struct {
	// AllowPrivate lets private, loopback, link-local and other internal
	// addresses through in answers this rule grants (private_answers:
	// allow, for names such as Azure Private Link endpoints). False, the
	// default, withholds them: a public name that answers with an address
	// on the device network is DNS rebinding.
	AllowPrivate bool
	// CNAMEStrict requires every CNAME target of an answer's chain to
	// match one of Via (cname_targets: strict); false accepts any chain.
	CNAMEStrict bool
	// Via are the patterns chain targets must match when CNAMEStrict.
	Via []Pattern
	// via is Via compiled, by policy.New; nil (nothing matches) before.
	via *trie
}

// compile builds the via matcher; policy.New calls it once per rule, and
// again harmlessly for a rule shared between groups.
func (a *AnswerRules) compile() {
	if len(a.Via) == 0 {
		a.via = nil
		return
	}
	t := &trie{}
	for _, p := range a.Via {
		t.insert(p, 0)
	}
	a.via = t
}

// ViaAllows reports whether a chain target may carry an answer this rule
// grants. target is in presentation form, any case, with or without the
// trailing dot; a name that is not a plain host name is never allowed.
func (a *AnswerRules) ViaAllows(target string) bool {
	if !a.CNAMEStrict {
		return true
	}
	name, ok := NormalizeName(target)
	if !ok || a.via == nil {
		return false
	}
	var buf [4]int
	return len(a.via.match(name, buf[:0])) > 0
}

// ForChain narrows the decision to the rules that grant an answer whose
// CNAME chain is chain (the targets in order, as Walk returns them). A
// decision without a strict rule is returned as it is, without copying.
// When no rule is left, refused is the first target of the chain that
// no strict rule of the decision allows (the one to show the user).
func (d Decision) ForChain(chain []string) (narrowed Decision, refused string) {
	strict := false
	for _, r := range d.Rules {
		strict = strict || r.Answers.CNAMEStrict
	}
	if !strict || len(chain) == 0 {
		return d, ""
	}
	out := Decision{Group: d.Group}
	for _, r := range d.Rules {
		if allowsChain(r, chain) {
			out.Rules = append(out.Rules, r)
		}
	}
	if len(out.Rules) > 0 {
		return out, ""
	}
	for _, target := range chain {
		allowed := false
		for _, r := range d.Rules {
			allowed = allowed || r.Answers.ViaAllows(target)
		}
		if !allowed {
			return out, target
		}
	}
	// Each target is allowed by some rule, but no rule allows them all:
	// name the first that the first rule refuses.
	for _, target := range chain {
		if !d.Rules[0].Answers.ViaAllows(target) {
			return out, target
		}
	}
	return out, chain[0] // not reached: the first rule refused some target
}

func allowsChain(r *Rule, chain []string) bool {
	for _, target := range chain {
		if !r.Answers.ViaAllows(target) {
			return false
		}
	}
	return true
}

// AllowsPrivate reports whether any of the decision's rules lets private
// addresses through.
func (d Decision) AllowsPrivate() bool {
	for _, r := range d.Rules {
		if r.Answers.AllowPrivate {
			return true
		}
	}
	return false
}

// PrivateOnly narrows the decision to the rules that allow private
// addresses: those that grant an answer's private addresses, on their own
// ports only. all is true when that is every rule (nothing narrowed, and
// the decision is returned as it is).
func (d Decision) PrivateOnly() (narrowed Decision, all bool) {
	n := 0
	for _, r := range d.Rules {
		if r.Answers.AllowPrivate {
			n++
		}
	}
	if n == len(d.Rules) {
		return d, true
	}
	out := Decision{Group: d.Group, Rules: make([]*Rule, 0, n)}
	for _, r := range d.Rules {
		if r.Answers.AllowPrivate {
			out.Rules = append(out.Rules, r)
		}
	}
	return out, false
}
