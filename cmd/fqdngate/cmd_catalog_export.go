package main

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/fqdngate/fqdngate/internal/catalog"
)

type catalogExportOptions struct {
	catalogFlags
	format string
}

func newCatalogExportCmd() *cobra.Command {
	var o catalogExportOptions
	cmd := &cobra.Command{
		Use:   "export NAME --format yaml|json|csv|config [--cloud C] [--region R] [--param NAME=VALUE ...]",
		Short: "A profile's endpoints as data, or as a rules snippet (config)",
		Example: `  fqdngate catalog export azure-sphere --format config
  fqdngate catalog export --format csv azure-sphere-ntp`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeProfiles,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.OutOrStdout(), args[0])
		},
	}
	enumFlag(cmd, &o.format, "format", "", catalog.Formats, "output format (required)")
	_ = cmd.MarkFlagRequired("format")
	o.add(cmd, "", "only this cloud (default: every cloud; config: public)")
	return cmd
}

func (o *catalogExportOptions) run(stdout io.Writer, name string) error {
	if o.format == "" {
		return usageErrorf("--format is required")
	}
	values, err := o.values()
	if err != nil {
		return err
	}
	cat, err := catalog.Default()
	if err != nil {
		return runtimeError(err)
	}
	if err := cat.Export(stdout, name, o.format, o.cloud, values); err != nil {
		return catalogError(err)
	}
	return nil
}
