package main

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fqdngate/fqdngate/internal/catalog"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// Flag values that check themselves while the command line is parsed: a
// bad value is a usage error (exit 2) before any command runs.

// paramValue collects repeated --param NAME=VALUE.
type paramValue map[string]string

func (p paramValue) Type() string { return "NAME=VALUE" }

func (p paramValue) String() string {
	keys := make([]string, 0, len(p))
	for k, v := range p {
		keys = append(keys, k+"="+v)
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

func (p paramValue) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" || v == "" {
		return fmt.Errorf("%q is not NAME=VALUE", s)
	}
	if err := catalog.CheckParam(k, v); err != nil {
		return err
	}
	p[k] = v
	return nil
}

// addrValue is an IP address; unset is the zero Addr.
type addrValue struct{ a *netip.Addr }

func (v addrValue) Type() string { return "IP" }

func (v addrValue) String() string {
	if v.a == nil || !v.a.IsValid() {
		return ""
	}
	return v.a.String()
}

func (v addrValue) Set(s string) error {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return fmt.Errorf("%q is not an IP address", s)
	}
	*v.a = a
	return nil
}

// addrPortValue is IP:port.
type addrPortValue struct{ ap *netip.AddrPort }

func (v addrPortValue) Type() string { return "IP:PORT" }

func (v addrPortValue) String() string {
	if v.ap == nil || !v.ap.IsValid() {
		return ""
	}
	return v.ap.String()
}

func (v addrPortValue) Set(s string) error {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return fmt.Errorf("%q is not IP:port", s)
	}
	*v.ap = ap
	return nil
}

// portValue is one port, as tcp/443.
type portValue struct{ p *string }

func (v portValue) Type() string { return "PROTO/PORT" }

func (v portValue) String() string { return *v.p }

func (v portValue) Set(s string) error {
	pr, err := policy.ParsePort(s)
	if err != nil || pr.IsRange() {
		return fmt.Errorf("%q is not one port like tcp/443", s)
	}
	*v.p = pr.String()
	return nil
}

// enumValue is one of a fixed set of words.
type enumValue struct {
	v       *string
	allowed []string
	// empty accepts "" (the default's "none given").
	empty bool
	typ   string
}

func (e enumValue) Type() string { return e.typ }

func (e enumValue) String() string { return *e.v }

func (e enumValue) Set(s string) error {
	if !slices.Contains(e.allowed, s) && (s != "" || !e.empty) {
		return fmt.Errorf("%q is not one of %s", s, strings.Join(e.allowed, ", "))
	}
	*e.v = s
	return nil
}

// enumFlag adds a flag of one of allowed, completing to them.
func enumFlag(cmd *cobra.Command, p *string, name, value string, allowed []string, usage string) {
	*p = value
	cmd.Flags().Var(enumValue{v: p, allowed: allowed, empty: value == "", typ: strings.ToUpper(name)}, name, usage+" ("+strings.Join(allowed, ", ")+")")
	_ = cmd.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(allowed, cobra.ShellCompDirectiveNoFileComp))
}

// catalogFlags are the flags that fill a profile's placeholders.
type catalogFlags struct {
	cloud  string
	region string
	params paramValue
}

// add binds them; cloudDefault "" means every cloud.
func (c *catalogFlags) add(cmd *cobra.Command, cloudDefault, cloudUsage string) {
	c.params = paramValue{}
	enumFlag(cmd, &c.cloud, "cloud", cloudDefault, catalog.Clouds, cloudUsage)
	cmd.Flags().StringVar(&c.region, "region", "", "Azure `REGION` for <region>, e.g. \"East US 2\"")
	cmd.Flags().Var(c.params, "param", "NAME=VALUE for a placeholder, e.g. iot_hub=contoso-hub (repeatable)")
}

// values are the placeholders' values, the region among them.
func (c *catalogFlags) values() (map[string]string, error) {
	if c.region != "" {
		if err := catalog.CheckParam("region", c.region); err != nil {
			return nil, usageErrorf("--region: %v", err)
		}
		c.params["region"] = c.region
	}
	return c.params, nil
}

// completeProfiles completes catalog profile names.
func completeProfiles(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	cat, err := catalog.Default()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var out []cobra.Completion
	for _, p := range cat.Profiles() {
		out = append(out, cobra.CompletionWithDesc(p.Name, p.Summary))
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// catalogError maps the catalog's errors: a wrong name, a missing
// parameter or nothing for the cloud is the user's to fix (2), anything
// else a failure (1). A missing parameter is told as the flag that gives
// it (the catalog's own words are a config's params.NAME).
func catalogError(err error) error {
	var (
		missing *catalog.MissingParamError
		unknown *catalog.UnknownProfileError
		noEps   *catalog.NoEndpointsError
	)
	switch {
	case errors.As(err, &missing):
		how := fmt.Sprintf("give --param %s=… (%s)", missing.Param.Name, missing.Param.Help)
		if missing.Param.Name == "region" {
			how = `give --region, e.g. --region "East US 2"`
		}
		return inputError(fmt.Errorf("profile %q needs parameter %q for %s: %s", missing.Profile, missing.Param.Name, missing.Host, how))
	case errors.As(err, &unknown), errors.As(err, &noEps):
		return inputError(err)
	}
	return runtimeError(err)
}

var _ pflag.Value = paramValue{}
