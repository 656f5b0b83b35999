package policy

// trie is a reversed-label trie of patterns. Each node stands for a suffix
// (e.g. "windows.net"); its rule lists say which rules match names at or
// below that suffix. The zero value is empty and ready to use.
//
// A trie is written only while a Policy is built and read-only afterwards.
type trie struct {
	root node
}

type node struct {
	children map[string]*node
	exact    []int         // rules whose pattern is exactly this name
	below    []int         // rules for "*.<this name>"
	inLabel  []inLabelRule // rules for "<prefix>*<suffix>.<this name>"
}

type inLabelRule struct {
	prefix, suffix string
	rule           int
}

func (t *trie) insert(p Pattern, rule int) {
	n := &t.root
	base := p.Base
	for base != "" {
		var label string
		label, base = cutLastLabel(base)
		child := n.children[label]
		if child == nil {
			if n.children == nil {
				n.children = make(map[string]*node)
			}
			child = &node{}
			n.children[label] = child
		}
		n = child
	}
	switch p.Kind {
	case Exact:
		n.exact = appendUnique(n.exact, rule)
	case Below:
		n.below = appendUnique(n.below, rule)
	case InLabel:
		n.inLabel = append(n.inLabel, inLabelRule{p.Prefix, p.Suffix, rule})
	}
}

// match appends to dst the rules matching a normalised name. dst may hold
// duplicates when several patterns of one rule match; callers dedupe.
func (t *trie) match(name string, dst []int) []int {
	n := &t.root
	rest := name // the labels not yet consumed, leftmost first
	for {
		if rest == "" {
			return append(dst, n.exact...)
		}
		// At least one label remains below this node's suffix.
		dst = append(dst, n.below...)
		if len(n.inLabel) > 0 && lastDot(rest) < 0 {
			for _, r := range n.inLabel {
				if matchLabel(rest, r.prefix, r.suffix) {
					dst = append(dst, r.rule)
				}
			}
		}
		var label string
		label, rest = cutLastLabel(rest)
		child := n.children[label]
		if child == nil {
			return dst
		}
		n = child
	}
}

// cutLastLabel splits off the rightmost label: "a.b.c" → "c", "a.b".
func cutLastLabel(s string) (label, rest string) {
	if i := lastDot(s); i >= 0 {
		return s[i+1:], s[:i]
	}
	return s, ""
}

func lastDot(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '.' {
			return i
		}
	}
	return -1
}

func appendUnique(s []int, v int) []int {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}
