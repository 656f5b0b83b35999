package policy

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

// Limits from RFC 1035: a name is at most 253 characters in presentation
// form without the trailing dot, a label at most 63.
const (
	maxNameLen  = 253
	maxLabelLen = 63
)

// PatternKind tells how a pattern's first label matches.
type PatternKind uint8

const (
	// Exact matches the name itself.
	Exact PatternKind = iota
	// Below ("*.example.com") matches one or more labels below the suffix.
	Below
	// InLabel ("azgn*.example.com") matches exactly one label, which must
	// start with Prefix and end with Suffix; "*" stands for zero or more
	// characters.
	InLabel
)

// Pattern is a validated, normalised FQDN pattern.
type Pattern struct {
	// Text is the normalised pattern, lower case, no trailing dot, IDNs in
	// punycode.
	Text string
	Kind PatternKind
	// Base is the fixed part: the whole name for Exact, the suffix below the
	// wildcard label otherwise.
	Base string
	// Prefix and Suffix of the wildcard label; InLabel only.
	Prefix, Suffix string
}

func (p Pattern) String() string { return p.Text }

// ErrTooBroad is returned for patterns that would allow a whole top-level
// domain or everything: that is no egress policy.
var ErrTooBroad = errors.New("too broad: a wildcard needs at least two fixed labels after it (e.g. *.example.com)")

// ParsePattern validates and normalises an FQDN pattern.
func ParsePattern(s string) (Pattern, error) {
	text := strings.ToLower(strings.TrimSpace(s))
	text = strings.TrimSuffix(text, ".")
	if text == "" {
		return Pattern{}, fmt.Errorf("pattern %q: empty", s)
	}
	labels := strings.Split(text, ".")
	for i, l := range labels {
		if i > 0 && strings.Contains(l, "*") {
			return Pattern{}, fmt.Errorf("pattern %q: a wildcard is only allowed in the first label", s)
		}
		if !isASCII(l) {
			if strings.Contains(l, "*") {
				return Pattern{}, fmt.Errorf("pattern %q: a wildcard label must be ASCII", s)
			}
			a, err := idna.Lookup.ToASCII(l)
			if err != nil {
				return Pattern{}, fmt.Errorf("pattern %q: label %q is not a valid internationalised label: %w", s, l, err)
			}
			labels[i] = a
		}
	}
	text = strings.Join(labels, ".")
	if len(text) > maxNameLen {
		return Pattern{}, fmt.Errorf("pattern %q: longer than %d characters", s, maxNameLen)
	}
	first := labels[0]
	p := Pattern{Text: text}
	switch {
	case first == "*":
		p.Kind = Below
	case strings.Contains(first, "*"):
		if strings.Count(first, "*") > 1 {
			return Pattern{}, fmt.Errorf("pattern %q: at most one * in a label", s)
		}
		p.Kind = InLabel
		p.Prefix, p.Suffix, _ = strings.Cut(first, "*")
		if err := checkLabelChars(strings.Replace(first, "*", "", 1), true); err != nil {
			return Pattern{}, fmt.Errorf("pattern %q: %w", s, err)
		}
	default:
		p.Kind = Exact
	}
	fixed := labels
	if p.Kind != Exact {
		fixed = labels[1:]
		if len(fixed) < 2 {
			return Pattern{}, fmt.Errorf("pattern %q: %w", s, ErrTooBroad)
		}
	}
	for _, l := range fixed {
		if err := checkLabel(l); err != nil {
			return Pattern{}, fmt.Errorf("pattern %q: %w", s, err)
		}
	}
	p.Base = strings.Join(fixed, ".")
	return p, nil
}

// Matches reports whether a normalised name (see NormalizeName) matches.
// It is the reference semantics that the trie must agree with.
func (p Pattern) Matches(name string) bool {
	switch p.Kind {
	case Exact:
		return name == p.Base
	case Below:
		return strings.HasSuffix(name, "."+p.Base)
	case InLabel:
		head, ok := strings.CutSuffix(name, "."+p.Base)
		if !ok || strings.Contains(head, ".") {
			return false
		}
		return matchLabel(head, p.Prefix, p.Suffix)
	}
	return false
}

func matchLabel(label, prefix, suffix string) bool {
	return len(label) >= len(prefix)+len(suffix) &&
		strings.HasPrefix(label, prefix) && strings.HasSuffix(label, suffix)
}

func checkLabel(l string) error {
	if l == "" {
		return errors.New("empty label")
	}
	if len(l) > maxLabelLen {
		return fmt.Errorf("label %q is longer than %d characters", l, maxLabelLen)
	}
	return checkLabelChars(l, false)
}

// checkLabelChars allows letters, digits, hyphen and underscore (used by
// SRV and service names); hyphens may not start or end a full label.
func checkLabelChars(l string, partial bool) error {
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("label %q has character %q; only letters, digits, '-' and '_' are allowed", l, c)
		}
	}
	if !partial && (strings.HasPrefix(l, "-") || strings.HasSuffix(l, "-")) {
		return fmt.Errorf("label %q starts or ends with '-'", l)
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// NormalizeName lowers a query name and strips its trailing dot. It returns
// ok=false for names that no pattern can match: empty, too long, or holding
// characters outside letters, digits, '-', '_' and '.' (escapes, binary
// labels, spaces), and names with empty labels.
func NormalizeName(name string) (string, bool) {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > maxNameLen {
		return "", false
	}
	lower := true
	labelLen := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '.':
			if labelLen == 0 {
				return "", false
			}
			labelLen = 0
			continue
		case c >= 'A' && c <= 'Z':
			lower = false
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return "", false
		}
		labelLen++
		if labelLen > maxLabelLen {
			return "", false
		}
	}
	if labelLen == 0 {
		return "", false
	}
	if lower {
		return name, true // the common case allocates nothing
	}
	return strings.ToLower(name), true
}
