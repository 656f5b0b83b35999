package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/fqdngate/fqdngate/internal/config"
)

const rootLong = `fqdngate: DNS resolver and egress firewall for allow-listed FQDNs.

Without --config, run observes this host's queries on ` + config.LocalDNS + `,
forwarding to the nameservers of /etc/resolv.conf, and enforces nothing.

Flags may come before or after arguments.
Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration,
3 check: a required endpoint failed.`

// newRootCmd builds the command tree writing to stdout and stderr; help
// goes to stdout.
func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "fqdngate",
		Short:         "DNS resolver and egress firewall for allow-listed FQDNs",
		Long:          rootLong,
		Version:       versionString(),
		SilenceErrors: true,
		SilenceUsage:  true,
		// The man page is generated from this tree: the same text on
		// every build.
		DisableAutoGenTag: true,
	}
	// completion is ours: bash, zsh and fish, and a wrong shell is a
	// usage error.
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetVersionTemplate("fqdngate {{.Version}}\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(
		newRunCmd(stderr),
		newValidateCmd(),
		newTeardownCmd(),
		newCatalogCmd(),
		newExplainCmd(),
		newSuggestCmd(),
		newCheckCmd(),
		newCoverageCmd(),
		newVersionCmd(),
		newCompletionCmd(),
		newManCmd(),
	)
	// The use lines list the flags themselves.
	var visit func(*cobra.Command)
	visit = func(c *cobra.Command) {
		c.DisableFlagsInUseLine = true
		for _, sub := range c.Commands() {
			visit(sub)
		}
	}
	visit(root)
	return root
}

// exactArgs accepts exactly the named arguments, saying which one is
// missing or which is one too many.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return fmt.Errorf("missing argument %s", names[len(args)])
		case len(args) > len(names):
			return fmt.Errorf("unexpected argument %q", args[len(names)])
		}
		return nil
	}
}

// noArgs accepts flags only.
var noArgs = exactArgs()
