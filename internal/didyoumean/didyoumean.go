package didyoumean

import (
	"slices"
	"strings"
)

// Distance is the optimal string alignment distance between a and b,
// counted in bytes: keys and profile names are ASCII.
func Distance(a, b string) int {
	// Three rows suffice: a transposition looks two rows back.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// Nearest returns the candidates s is probably a typo of, in the
// candidates' order: those s is the beginning of (at least three
// characters, at most three such candidates: "max_entries_per" is
// max_entries_per_client cut short), else the closest ones
// case-insensitively, if at most one edit in three characters of s (at
// least one) away. Nothing is returned when s is a candidate.
func Nearest(s string, candidates []string) []string {
	if slices.Contains(candidates, s) {
		return nil
	}
	ls := strings.ToLower(s)
	var out []string
	if len(ls) >= 3 {
		for _, c := range candidates {
			if strings.HasPrefix(strings.ToLower(c), ls) {
				out = append(out, c)
			}
		}
		if len(out) > 0 && len(out) <= 3 {
			return out
		}
	}
	limit := max(1, len(ls)/3)
	best, out := limit+1, nil
	for _, c := range candidates {
		switch d := Distance(ls, strings.ToLower(c)); {
		case d < best:
			best, out = d, []string{c}
		case d == best:
			out = append(out, c)
		}
	}
	return out
}

// Phrase is "did you mean a?" or "did you mean a or b?", with each
// suggestion formatted by quote (e.g. strconv.Quote, or none); "" when
// there is no suggestion.
func Phrase(suggestions []string, quote func(string) string) string {
	if len(suggestions) == 0 {
		return ""
	}
	q := make([]string, len(suggestions))
	for i, s := range suggestions {
		q[i] = s
		if quote != nil {
			q[i] = quote(s)
		}
	}
	if len(q) == 1 {
		return "did you mean " + q[0] + "?"
	}
	return "did you mean " + strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1] + "?"
}
