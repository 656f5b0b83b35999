package catalog

import (
	"fmt"
	"strings"

	"github.com/fqdngate/fqdngate/internal/policy"
)

// Endpoint is one host of a resolved profile: placeholders filled, the
// wildcard narrowed where a parameter allows it.
type Endpoint struct {
	// Pattern is the validated host pattern.
	Pattern policy.Pattern
	// Template is the host as the catalog writes it (with placeholders).
	Template string
	Ports    []policy.PortRange
	Entry    *Entry
	Via      []string
	// Narrowed is true when a parameter replaced the entry's wildcard.
	Narrowed bool
}

// Resolve lists the endpoints of a profile (with its includes) for a cloud,
// with placeholders filled from values. region is normalised ("East US 2"
// becomes eastus2). A placeholder without a value is a *MissingParamError;
// a profile with nothing for the cloud is an error too, so that a typo'd
// cloud cannot silently allow nothing.
func (c *Catalog) Resolve(name, cloud string, values map[string]string) ([]Endpoint, error) {
	items, err := c.Items(name, cloud)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, &NoEndpointsError{Profile: name, Cloud: cloud, Clouds: c.Clouds(name)}
	}
	for k, v := range values {
		if err := CheckParam(k, v); err != nil {
			return nil, err
		}
	}
	var out []Endpoint
	for _, it := range items {
		e := it.Entry
		for _, tmpl := range e.Hosts {
			ep := Endpoint{Template: tmpl, Ports: e.ports, Entry: e, Via: it.Via}
			if e.Narrow != "" {
				if narrowed, _, ok := render(e.Narrow, values); ok {
					tmpl, ep.Narrowed = narrowed, true
				}
			}
			host, missing, ok := render(tmpl, values)
			if !ok {
				p, _ := ParamByName(missing)
				return nil, &MissingParamError{Profile: name, Param: p, Host: tmpl}
			}
			pat, err := policy.ParsePattern(host)
			if err != nil {
				return nil, fmt.Errorf("profile %q, %s: %w", name, e.Source(), err)
			}
			ep.Pattern = pat
			out = append(out, ep)
		}
	}
	return out, nil
}

// ProfileRules turns a profile into policy rules, one per catalog entry, so
// that a ledger entry and an explanation can name the seed row that allowed
// an address. It implements config.ProfileSource.
func (c *Catalog) ProfileRules(name, cloud string, values map[string]string) ([]*policy.Rule, error) {
	eps, err := c.Resolve(name, cloud, values)
	if err != nil {
		return nil, err
	}
	var rules []*policy.Rule
	byEntry := make(map[*Entry]*policy.Rule)
	for _, ep := range eps {
		r, ok := byEntry[ep.Entry]
		if !ok {
			r = &policy.Rule{
				Name:   ep.Entry.profile.Name,
				Source: ruleSource(ep),
				Ports:  ep.Ports,
			}
			byEntry[ep.Entry] = r
			rules = append(rules, r)
		}
		r.Patterns = append(r.Patterns, ep.Pattern)
	}
	return rules, nil
}

// ruleSource reads "catalog azure-arc-data > azure-arc-k8s, seed 002 line 23".
func ruleSource(ep Endpoint) string {
	return fmt.Sprintf("catalog %s, %s", strings.Join(ep.Via, " > "), ep.Entry.Source())
}
