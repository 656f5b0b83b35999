package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"time"

	"github.com/fqdngate/fqdngate/internal/api"
	"github.com/fqdngate/fqdngate/internal/catalog"
	"github.com/fqdngate/fqdngate/internal/policy"
	"github.com/fqdngate/fqdngate/internal/servicetags"
)

// ledgerLimit is the API's largest page: coverage reads one.
const ledgerLimit = 10000

func cmdCoverage(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("coverage", "coverage --service-tags FILE [--profile P ...] [--api ADDR | --config FILE | --resolve [--dns SERVER]] [--asn-prefixes FILE] [--json]", stderr)
	tagsFile := fs.String("service-tags", "", "Microsoft's service tags `file` (ServiceTags_Public_*.json or the discovery API's JSON; required)")
	var profiles stringList
	fs.Var(&profiles, "profile", "catalog `profile` whose endpoints to report (repeatable; default: every name in the ledger, or the config's rules with --resolve)")
	resolveNow := fs.Bool("resolve", false, "resolve the endpoints now instead of asking the daemon's ledger")
	server := fs.String("dns", "", "with --resolve: resolver `IP[:port]` to ask (default: the first nameserver of /etc/resolv.conf)")
	asnFile := fs.String("asn-prefixes", "", "`file` of PREFIX ASN [NAME] lines: adds each address's origin AS and what allowing it would open")
	asJSON := fs.Bool("json", false, "print the JSON report (schema 1)")
	region := fs.String("region", "", "Azure `region` for <region> in profiles")
	cloud := fs.String("cloud", catalog.CloudPublic, "`cloud`: public, usgov or china")
	values := paramFlags{}
	fs.Var(values, "param", "`NAME=VALUE` for a placeholder (repeatable)")
	timeout := fs.Duration("timeout", 5*time.Second, "with --resolve: time for each query")
	af := addAPIFlags(fs)
	if code, stop := parse(fs, args); stop {
		return code
	}
	if *tagsFile == "" {
		fmt.Fprintln(stderr, "coverage: --service-tags is required (download ServiceTags_Public_*.json from Microsoft)")
		fs.Usage()
		return exitUsage
	}
	file, err := servicetags.Load(*tagsFile)
	if err != nil {
		return coverageFail(stderr, err)
	}
	in := servicetags.CoverageInput{Index: servicetags.NewIndex(file)}
	if *asnFile != "" {
		if in.ASN, err = servicetags.LoadASN(*asnFile); err != nil {
			return coverageFail(stderr, err)
		}
	}

	// Which names: the profiles' patterns, or (with --resolve) the config's.
	var patterns []policy.Pattern
	if *region != "" {
		values["region"] = *region
	}
	if len(profiles) > 0 {
		cat, err := catalog.Default()
		if err != nil {
			fmt.Fprintln(stderr, "fqdngate:", err)
			return exitRuntime
		}
		for _, p := range profiles {
			eps, err := cat.Resolve(p, *cloud, values)
			if err != nil {
				fmt.Fprintln(stderr, "coverage:", err)
				return exitUsage
			}
			for _, ep := range eps {
				if !slices.Contains(patterns, ep.Pattern) {
					patterns = append(patterns, ep.Pattern)
				}
			}
		}
	}

	if *resolveNow {
		if len(patterns) == 0 {
			if *af.file == "" {
				fmt.Fprintln(stderr, "coverage: --resolve needs --profile or --config (the names to resolve)")
				return exitUsage
			}
			c, code := loadOrLocal(*af.file, stderr)
			if c == nil {
				return code
			}
			for _, g := range c.Derived.Policy.Groups() {
				for _, r := range g.Rules {
					for _, p := range r.Patterns {
						if !slices.Contains(patterns, p) {
							patterns = append(patterns, p)
						}
					}
				}
			}
		}
		dnsServer, err := checkResolver(*server)
		if err != nil {
			fmt.Fprintln(stderr, "coverage:", err)
			return exitUsage
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var errs []error
		in.Observed, in.Unresolvable, errs = servicetags.Resolve(ctx, dnsServer, patterns, *timeout)
		for _, err := range errs {
			fmt.Fprintln(stderr, "coverage:", err)
		}
		in.Source = "resolved now through " + dnsServer
	} else {
		base, _, code := af.base(stderr)
		if base == "" {
			return code
		}
		var resp api.LedgerResponse
		if err := getJSON(base, "/api/v1/ledger", url.Values{"limit": {fmt.Sprint(ledgerLimit)}}, &resp); err != nil {
			fmt.Fprintln(stderr, "fqdngate:", err)
			return exitRuntime
		}
		entries := make([]servicetags.NameAddr, len(resp.Entries))
		for i, e := range resp.Entries {
			entries[i] = servicetags.NameAddr{Name: e.Name, Addr: e.Addr}
		}
		in.Observed = servicetags.Group(entries, patterns)
		in.Source = "the daemon's ledger at " + base
		if resp.Truncated {
			in.Source += fmt.Sprintf(" (its first %d entries)", ledgerLimit)
		}
	}

	r := servicetags.BuildCoverage(in)
	if *asJSON {
		err = r.WriteJSON(stdout)
	} else {
		err = r.WriteTable(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "coverage:", err)
		return exitRuntime
	}
	return exitOK
}

// coverageFail reports a file that could not be used: a malformed one is
// bad input (2), an unreadable one a runtime failure (1).
func coverageFail(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "coverage:", err)
	if errors.Is(err, servicetags.ErrFormat) {
		return exitUsage
	}
	return exitRuntime
}
