package servicetags

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/policy"
)

// NameAddr is one address a name was given (a ledger entry).
type NameAddr struct {
	Name string
	Addr netip.Addr
}

// Group turns ledger entries into observed endpoints, one per name. With
// patterns, only names matching one of them are kept, and every pattern no
// kept name matches is returned as an endpoint without addresses (so the
// report can say that nothing was seen for it).
func Group(entries []NameAddr, patterns []policy.Pattern) []Observed {
	byName := map[string][]netip.Addr{}
	matched := make([]bool, len(patterns))
	for _, e := range entries {
		if len(patterns) > 0 {
			hit := false
			for i, p := range patterns {
				if p.Matches(e.Name) {
					matched[i], hit = true, true
				}
			}
			if !hit {
				continue
			}
		}
		byName[e.Name] = append(byName[e.Name], e.Addr)
	}
	var out []Observed
	for name, addrs := range byName {
		out = append(out, Observed{Name: name, Addrs: addrs})
	}
	for i, p := range patterns {
		if !matched[i] && !slices.ContainsFunc(out, func(o Observed) bool { return o.Name == p.Text }) {
			out = append(out, Observed{Name: p.Text})
		}
	}
	slices.SortFunc(out, func(a, b Observed) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// resolveParallel bounds the queries --resolve has in flight.
const resolveParallel = 8

// Resolve asks server (IP:port) for the A and AAAA records of every exact
// pattern now; the recursive resolver follows CNAME chains, so the
// addresses at the chain's end are the name's. Wildcard patterns cannot be
// asked for and are returned apart. A name that fails to resolve is
// returned without addresses, and its error in errs.
func Resolve(ctx context.Context, server string, patterns []policy.Pattern, timeout time.Duration) (obs []Observed, wildcards []string, errs []error) {
	var names []string
	for _, p := range patterns {
		if p.Kind != policy.Exact {
			wildcards = append(wildcards, p.Text)
			continue
		}
		if !slices.Contains(names, p.Text) {
			names = append(names, p.Text)
		}
	}
	obs = make([]Observed, len(names))
	errOf := make([]error, len(names))
	var wg sync.WaitGroup
	sem := make(chan struct{}, resolveParallel)
	for i, name := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			obs[i] = Observed{Name: name}
			obs[i].Addrs, errOf[i] = resolveName(ctx, server, name, timeout)
		}()
	}
	wg.Wait()
	for _, err := range errOf {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return obs, wildcards, errs
}

func resolveName(ctx context.Context, server, name string, timeout time.Duration) ([]netip.Addr, error) {
	c := &dns.Client{Timeout: timeout}
	var out []netip.Addr
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qt)
		m.RecursionDesired = true
		resp, _, err := c.ExchangeContext(ctx, m, server)
		if err == nil && resp.Truncated {
			tc := &dns.Client{Net: "tcp", Timeout: timeout}
			resp, _, err = tc.ExchangeContext(ctx, m, server)
		}
		if err != nil {
			return out, fmt.Errorf("resolve %s %s at %s: %w", name, dns.TypeToString[qt], server, err)
		}
		if resp.Rcode != dns.RcodeSuccess {
			return out, fmt.Errorf("resolve %s %s at %s: %s", name, dns.TypeToString[qt], server, dns.RcodeToString[resp.Rcode])
		}
		for _, rr := range resp.Answer {
			switch v := rr.(type) {
			case *dns.A:
				if a, ok := netip.AddrFromSlice(v.A.To4()); ok {
					out = append(out, a)
				}
			case *dns.AAAA:
				if a, ok := netip.AddrFromSlice(v.AAAA); ok {
					out = append(out, a)
				}
			}
		}
	}
	return out, nil
}
