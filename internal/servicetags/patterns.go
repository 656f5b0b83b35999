package servicetags

import (
	"slices"

	"github.com/fqdngate/fqdngate/internal/catalog"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// ProfilePatterns lists the name patterns of catalog profiles (with
// their includes, for the cloud, placeholders filled from values), each
// once, in catalog order.
func ProfilePatterns(cat *catalog.Catalog, profiles []string, cloud string, values map[string]string) ([]policy.Pattern, error) {
	var out []policy.Pattern
	for _, p := range profiles {
		eps, err := cat.Resolve(p, cloud, values)
		if err != nil {
			return nil, err
		}
		for _, ep := range eps {
			if !slices.Contains(out, ep.Pattern) {
				out = append(out, ep.Pattern)
			}
		}
	}
	return out, nil
}

// PolicyPatterns lists the name patterns of a policy's rules, each once.
func PolicyPatterns(pol *policy.Policy) []policy.Pattern {
	var out []policy.Pattern
	for _, g := range pol.Groups() {
		for _, r := range g.Rules {
			for _, p := range r.Patterns {
				if !slices.Contains(out, p) {
					out = append(out, p)
				}
			}
		}
	}
	return out
}
