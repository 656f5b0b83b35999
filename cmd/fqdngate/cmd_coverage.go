package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/fqdngate/fqdngate/internal/api"
	"github.com/fqdngate/fqdngate/internal/catalog"
	"github.com/fqdngate/fqdngate/internal/policy"
	"github.com/fqdngate/fqdngate/internal/servicetags"
)

// Bounds of coverage.
const (
	// ledgerLimit is the API's largest page: coverage reads one.
	ledgerLimit = 10000
	// coverageResolveDeadline bounds --resolve as a whole.
	coverageResolveDeadline = 2 * time.Minute
	coverageTimeout         = 5 * time.Second
)

type coverageOptions struct {
	tagsFile string
	profiles []string
	resolve  bool
	dns      string
	asnFile  string
	json     bool
	catalogFlags
	timeout time.Duration
	apiFlags
}

func newCoverageCmd() *cobra.Command {
	var o coverageOptions
	cmd := &cobra.Command{
		Use:   "coverage --service-tags FILE [--profile P ...] [--api ADDR | --config FILE | --resolve [--dns SERVER]] [--asn-prefixes FILE] [--json]",
		Short: "Which endpoints an Azure service-tag rule could carry",
		Long: `Report, for each endpoint, whether Microsoft's service tags cover the
addresses it resolves to: which a static service-tag rule could carry, and
which need fqdngate. The addresses come from the daemon's ledger, or with
--resolve from resolving the names now.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.OutOrStdout(), cmd.ErrOrStderr()) },
	}
	f := cmd.Flags()
	f.StringVar(&o.tagsFile, "service-tags", "", "Microsoft's service tags `FILE` (ServiceTags_Public_*.json or the discovery API's JSON; required)")
	f.StringArrayVar(&o.profiles, "profile", nil, "catalog `PROFILE` whose endpoints to report (repeatable; default: every name in the ledger, or the config's rules with --resolve)")
	f.BoolVar(&o.resolve, "resolve", false, "resolve the endpoints now instead of asking the daemon's ledger")
	f.StringVar(&o.dns, "dns", "", "with --resolve: resolver `IP[:PORT]` to ask (default: the first nameserver of /etc/resolv.conf)")
	f.StringVar(&o.asnFile, "asn-prefixes", "", "`FILE` of PREFIX ASN [NAME] lines: adds each address's origin AS and what allowing it would open")
	f.BoolVar(&o.json, "json", false, "print the JSON report (schema 1)")
	o.catalogFlags.add(cmd, catalog.CloudPublic, "cloud")
	f.DurationVar(&o.timeout, "timeout", coverageTimeout, "with --resolve: time for each query")
	o.apiFlags.add(cmd)
	_ = cmd.MarkFlagRequired("service-tags")
	_ = cmd.MarkFlagFilename("service-tags", "json")
	_ = cmd.RegisterFlagCompletionFunc("profile", completeProfiles)
	return cmd
}

func (o *coverageOptions) run(stdout, stderr io.Writer) error {
	file, err := servicetags.Load(o.tagsFile)
	if err != nil {
		return fileError(err)
	}
	in := servicetags.CoverageInput{Index: servicetags.NewIndex(file)}
	if o.asnFile != "" {
		if in.ASN, err = servicetags.LoadASN(o.asnFile); err != nil {
			return fileError(err)
		}
	}
	values, err := o.values()
	if err != nil {
		return err
	}
	// Which names: the profiles' patterns, or (with --resolve) the config's.
	var patterns []policy.Pattern
	if len(o.profiles) > 0 {
		cat, err := catalog.Default()
		if err != nil {
			return runtimeError(err)
		}
		if patterns, err = servicetags.ProfilePatterns(cat, o.profiles, o.cloud, values); err != nil {
			return catalogError(err)
		}
	}
	if o.resolve {
		if len(patterns) == 0 {
			if o.apiFlags.config == "" {
				return usageErrorf("--resolve needs --profile or --config (the names to resolve)")
			}
			c, err := loadOrLocal(o.apiFlags.config, false)
			if err != nil {
				return err
			}
			patterns = servicetags.PolicyPatterns(c.Derived.Policy)
		}
		server, err := resolverAddr(o.dns)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), coverageResolveDeadline)
		defer cancel()
		var errs []error
		in.Observed, in.Unresolvable, errs = servicetags.Resolve(ctx, server, patterns, o.timeout)
		for _, err := range errs {
			fmt.Fprintln(stderr, "fqdngate coverage:", err)
		}
		in.Source = "resolved now through " + server
	} else {
		base, _, err := o.base()
		if err != nil {
			return err
		}
		var resp api.LedgerResponse
		if err := getJSON(base, "/api/v1/ledger", url.Values{"limit": {fmt.Sprint(ledgerLimit)}}, &resp); err != nil {
			return runtimeError(err)
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
	if o.json {
		err = r.WriteJSON(stdout)
	} else {
		err = r.WriteTable(stdout)
	}
	if err != nil {
		return runtimeError(err)
	}
	return nil
}

// fileError reports a file that could not be used: a malformed one is
// bad input (2), an unreadable one a runtime failure (1).
func fileError(err error) error {
	if errors.Is(err, servicetags.ErrFormat) {
		return inputError(err)
	}
	return runtimeError(err)
}
