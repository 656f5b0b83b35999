// Package suggest turns the names clients asked for (observe mode) into a
// configuration that would allow them: catalog profiles where the names
// match one, the rest as rules of their own.
package suggest

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fqdngate/fqdngate/internal/catalog"
	"github.com/fqdngate/fqdngate/internal/monitor"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// A profile is suggested when it explains at least this many of the names
// seen, or this share of its own fixed hosts: one shared name such as
// login.microsoftonline.com says nothing about which product is in use.
const (
	minNames = 2
	minShare = 0.25
)

// Pick is one suggested profile and the names it covers.
type Pick struct {
	Profile string
	Names   []string
	// Hosts is how many fixed hosts the profile has.
	Hosts int
}

// Suggestion is the outcome: profiles, names no profile covers, and the
// clients that asked.
type Suggestion struct {
	Profiles []Pick
	Other    []string
	Clients  []netip.Addr
	First    time.Time
	Last     time.Time
	Names    int
}

type candidate struct {
	name     string
	patterns []policy.Pattern
	hosts    int
}

// Build picks profiles greedily: the one covering most of the names still
// uncovered (ties: the smaller profile), until none qualifies.
func Build(seen []monitor.NameSeen, cat *catalog.Catalog) Suggestion {
	var s Suggestion
	clients := map[netip.Addr]bool{}
	uncovered := map[string]bool{}
	for _, n := range seen {
		uncovered[n.Name] = true
		for _, c := range n.ClientAddrs {
			clients[c] = true
		}
		if s.First.IsZero() || n.First.Before(s.First) {
			s.First = n.First
		}
		if n.Last.After(s.Last) {
			s.Last = n.Last
		}
	}
	s.Names = len(seen)
	var cands []candidate
	for _, p := range cat.Profiles() {
		items, err := cat.Items(p.Name, "")
		if err != nil {
			continue
		}
		c := candidate{name: p.Name}
		for _, it := range items {
			for _, h := range it.Entry.Hosts {
				if strings.Contains(h, "<") {
					continue // needs a parameter the names cannot tell
				}
				pat, err := policy.ParsePattern(h)
				if err != nil {
					continue
				}
				c.patterns = append(c.patterns, pat)
				if pat.Kind == policy.Exact {
					c.hosts++
				}
			}
		}
		cands = append(cands, c)
	}
	for {
		best, bestNames := -1, []string(nil)
		for i, c := range cands {
			var covered []string
			for n := range uncovered {
				if slices.ContainsFunc(c.patterns, func(p policy.Pattern) bool { return p.Matches(n) }) {
					covered = append(covered, n)
				}
			}
			share := 0.0
			if c.hosts > 0 {
				share = float64(len(covered)) / float64(c.hosts)
			}
			if len(covered) == 0 || (len(covered) < minNames && share < minShare) {
				continue
			}
			if best < 0 || len(covered) > len(bestNames) || len(covered) == len(bestNames) && c.hosts < cands[best].hosts {
				best, bestNames = i, covered
			}
		}
		if best < 0 {
			break
		}
		slices.Sort(bestNames)
		s.Profiles = append(s.Profiles, Pick{Profile: cands[best].name, Names: bestNames, Hosts: cands[best].hosts})
		for _, n := range bestNames {
			delete(uncovered, n)
		}
		cands = slices.Delete(cands, best, best+1)
	}
	slices.SortFunc(s.Profiles, func(a, b Pick) int { return strings.Compare(a.Profile, b.Profile) })
	for n := range uncovered {
		s.Other = append(s.Other, n)
	}
	slices.Sort(s.Other)
	for c := range clients {
		s.Clients = append(s.Clients, c)
	}
	slices.SortFunc(s.Clients, netip.Addr.Compare)
	return s
}

// WriteConfig writes the suggestion as a configuration file in observe
// mode. upstreams are written as given.
func (s Suggestion) WriteConfig(w io.Writer, upstreams []string) error {
	q := func(v string) string { return strconv.Quote(v) }
	fmt.Fprintf(w, "# Written by 'fqdngate suggest' from %d names asked between %s and %s.\n", s.Names,
		s.First.UTC().Format(time.RFC3339), s.Last.UTC().Format(time.RFC3339))
	fmt.Fprintln(w, "# Review it before use: DNS does not show which ports were used. Catalog profiles carry")
	fmt.Fprintln(w, "# the documented ports; the other names get tcp/443 as a guess. Run it in observe mode,")
	fmt.Fprintln(w, "# check 'fqdngate explain' for would-drops, then switch to enforce.")
	fmt.Fprintln(w, "mode: observe")
	ups := make([]string, len(upstreams))
	for i, u := range upstreams {
		ups[i] = q(u)
	}
	fmt.Fprintf(w, "upstreams: [%s]\n", strings.Join(ups, ", "))
	fmt.Fprintln(w, "clients:")
	fmt.Fprintln(w, "  - name: seen")
	cidrs := make([]string, len(s.Clients))
	for i, c := range s.Clients {
		cidrs[i] = q(netip.PrefixFrom(c, c.BitLen()).String())
	}
	if len(cidrs) == 0 {
		cidrs = []string{q("192.0.2.0/24")}
		fmt.Fprintln(w, "    # no client was seen: put your devices' networks here")
	}
	fmt.Fprintf(w, "    cidrs: [%s]\n", strings.Join(cidrs, ", "))
	if len(s.Profiles) > 0 {
		fmt.Fprintln(w, "    profiles:")
		for _, p := range s.Profiles {
			fmt.Fprintf(w, "      - %s  # %d names seen: %s\n", p.Profile, len(p.Names), abbreviate(p.Names, 4))
		}
	}
	if len(s.Other) > 0 {
		names := make([]string, len(s.Other))
		for i, n := range s.Other {
			names[i] = q(n)
		}
		fmt.Fprintln(w, "    rules:")
		fmt.Fprintln(w, "      - name: seen-names")
		fmt.Fprintf(w, "        fqdn: [%s]\n", strings.Join(names, ", "))
		fmt.Fprintln(w, "        ports: [\"tcp/443\"]  # a guess: DNS does not show ports")
	}
	if len(s.Profiles) == 0 && len(s.Other) == 0 {
		fmt.Fprintln(w, "    rules: []  # no names were seen yet")
	}
	return nil
}

func abbreviate(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:n], ", ") + fmt.Sprintf(", and %d more", len(names)-n)
}
