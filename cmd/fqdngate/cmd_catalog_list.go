package main

import (
	"github.com/spf13/cobra"

	"github.com/fqdngate/fqdngate/internal/catalog"
)

func newCatalogListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "The built-in profiles",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cat, err := catalog.Default()
			if err != nil {
				return runtimeError(err)
			}
			if err := cat.WriteList(cmd.OutOrStdout()); err != nil {
				return catalogError(err)
			}
			return nil
		},
	}
}
