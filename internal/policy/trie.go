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
	inLabel  []inLabelRule // rules for "<prefix>*<suffix>.<this name>", suffix not empty
	// byPrefix holds the rules for "<prefix>*.<this name>" (no suffix, the
	// common form, e.g. azgn*.servicebus.windows.net) by prefix, so that
	// a label is checked with one lookup per prefix length in use rather
	// than against every rule; minPre and maxPre bound those lengths.
	byPrefix       map[string][]int
	minPre, maxPre int
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
		if p.Suffix != "" {
			n.inLabel = append(n.inLabel, inLabelRule{p.Prefix, p.Suffix, rule})
			break
		}
		if n.byPrefix == nil {
			n.byPrefix = make(map[string][]int)
			n.minPre, n.maxPre = len(p.Prefix), len(p.Prefix)
		}
		n.byPrefix[p.Prefix] = appendUnique(n.byPrefix[p.Prefix], rule)
		n.minPre, n.maxPre = min(n.minPre, len(p.Prefix)), max(n.maxPre, len(p.Prefix))
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
		if (len(n.inLabel) > 0 || n.byPrefix != nil) && lastDot(rest) < 0 {
			for _, r := range n.inLabel {
				if matchLabel(rest, r.prefix, r.suffix) {
					dst = append(dst, r.rule)
				}
			}
			for l := n.minPre; l <= min(n.maxPre, len(rest)) && n.byPrefix != nil; l++ {
				dst = append(dst, n.byPrefix[rest[:l]]...)
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
