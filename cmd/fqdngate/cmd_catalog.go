package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func newCatalogCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "catalog list | show NAME | export NAME --format F",
		Short: "The built-in Azure endpoint catalog",
		Long: `The built-in Azure endpoint catalog: profiles of the names, ports and
purposes a product needs, with placeholders (<region>, <iot_hub>, ...) that
--region and --param fill.`,
		// A parent without a command given (or with an unknown one) is a
		// usage error, as at the top.
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("missing command: one of list, show, export")
			}
			err := fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				err = fmt.Errorf("%w (did you mean %s?)", err, strings.Join(s, ", "))
			}
			return err
		},
	}
	cmd.SuggestionsMinimumDistance = 2
	cmd.AddCommand(newCatalogListCmd(), newCatalogShowCmd(), newCatalogExportCmd())
	return cmd
}
