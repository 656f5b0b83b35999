package main

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/fqdngate/fqdngate/internal/catalog"
)

type catalogShowOptions struct {
	catalogFlags
}

func newCatalogShowCmd() *cobra.Command {
	var o catalogShowOptions
	cmd := &cobra.Command{
		Use:               "show NAME [--cloud C] [--region R] [--param NAME=VALUE ...]",
		Short:             "A profile's endpoints as a table",
		Example:           `  fqdngate catalog show azure-iot-hub --param iot_hub=contoso-hub`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeProfiles,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.OutOrStdout(), args[0])
		},
	}
	o.add(cmd, "", "only this cloud (default: every cloud)")
	return cmd
}

func (o *catalogShowOptions) run(stdout io.Writer, name string) error {
	values, err := o.values()
	if err != nil {
		return err
	}
	cat, err := catalog.Default()
	if err != nil {
		return runtimeError(err)
	}
	if err := cat.WriteShow(stdout, name, o.cloud, values); err != nil {
		return catalogError(err)
	}
	return nil
}
