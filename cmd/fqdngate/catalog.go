package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/fqdngate/fqdngate/internal/catalog"
)

const catalogUsage = `Usage:
  fqdngate catalog list                        the built-in profiles
  fqdngate catalog show NAME [flags]           a profile's endpoints as a table
  fqdngate catalog export NAME --format F [flags]
                                               F: yaml, json, csv, or config (a rules snippet)

Flags of show and export:
  --cloud C          public, usgov or china (default: every cloud; config: public)
  --region R         fills <region> ("East US 2" becomes eastus2)
  --param NAME=VALUE fills another placeholder, e.g. iot_hub=contoso-hub (repeatable)
`

// paramFlags collects repeated --param NAME=VALUE.
type paramFlags map[string]string

func (p paramFlags) String() string { return "" }

func (p paramFlags) Set(s string) error {
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

func cmdCatalog(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || slices.Contains([]string{"-h", "--help", "help"}, args[0]) {
		fmt.Fprint(stderr, catalogUsage)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	cat, err := catalog.Default()
	if err != nil {
		fmt.Fprintln(stderr, "fqdngate:", err)
		return exitRuntime
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "list":
		fs := newFlags("catalog list", "catalog list", stderr)
		if code, stop := parse(fs, rest); stop {
			return code
		}
		return done(cat.WriteList(stdout), stderr)
	case "show", "export":
		return cmdCatalogProfile(cat, sub, rest, stdout, stderr)
	}
	fmt.Fprintf(stderr, "fqdngate catalog: unknown command %q\n\n%s", sub, catalogUsage)
	return exitUsage
}

func cmdCatalogProfile(cat *catalog.Catalog, sub string, args []string, stdout, stderr io.Writer) int {
	synopsis := "catalog show NAME [--cloud C] [--region R] [--param NAME=VALUE ...]"
	if sub == "export" {
		synopsis = "catalog export NAME --format yaml|json|csv|config [--cloud C] [--region R] [--param NAME=VALUE ...]"
	}
	fs := newFlags("catalog "+sub, synopsis, stderr)
	cloud := fs.String("cloud", "", "only this `cloud`: "+strings.Join(catalog.Clouds, ", "))
	region := fs.String("region", "", "Azure `region` for <region>, e.g. \"East US 2\"")
	values := paramFlags{}
	fs.Var(values, "param", "`NAME=VALUE` for a placeholder, e.g. iot_hub=contoso-hub (repeatable)")
	format := ""
	if sub == "export" {
		fs.StringVar(&format, "format", "", "output `format`: "+strings.Join(catalog.Formats, ", ")+" (required)")
	}
	// The profile name comes first, flags after it, as in the usage line.
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if code, stop := parse(fs, args); stop {
			return code
		}
		fmt.Fprintf(stderr, "catalog %s: a profile NAME is required; 'fqdngate catalog list' shows them\n", sub)
		return exitUsage
	}
	name := args[0]
	if code, stop := parse(fs, args[1:]); stop {
		return code
	}
	if *cloud != "" && !slices.Contains(catalog.Clouds, *cloud) {
		fmt.Fprintf(stderr, "catalog %s: --cloud %q is not one of %s\n", sub, *cloud, strings.Join(catalog.Clouds, ", "))
		return exitUsage
	}
	if *region != "" {
		if err := catalog.CheckParam("region", *region); err != nil {
			fmt.Fprintf(stderr, "catalog %s: --region: %v\n", sub, err)
			return exitUsage
		}
		values["region"] = *region
	}
	if sub == "export" && !slices.Contains(catalog.Formats, format) {
		fmt.Fprintf(stderr, "catalog export: --format %q is not one of %s\n", format, strings.Join(catalog.Formats, ", "))
		return exitUsage
	}
	if sub == "show" {
		err := cat.WriteShow(stdout, name, *cloud, values)
		return done(err, stderr)
	}
	return done(cat.Export(stdout, name, format, *cloud, values), stderr)
}

// done maps a catalog error to an exit code: a wrong name or a missing
// parameter is the user's to fix (2), anything else is a failure (1).
func done(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "fqdngate:", err)
	var (
		missing *catalog.MissingParamError
		unknown *catalog.UnknownProfileError
		noEps   *catalog.NoEndpointsError
	)
	if errors.As(err, &unknown) || errors.As(err, &missing) || errors.As(err, &noEps) {
		return exitUsage
	}
	return exitRuntime
}
