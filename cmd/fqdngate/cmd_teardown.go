package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/fqdngate/fqdngate/internal/config"
	"github.com/fqdngate/fqdngate/internal/enforce"
)

type teardownOptions struct {
	table  string
	config string
}

func newTeardownCmd() *cobra.Command {
	var o teardownOptions
	cmd := &cobra.Command{
		Use:   "teardown [--table NAME | --config FILE]",
		Short: "Remove fqdngate's nftables table",
		Long: `Remove fqdngate's nftables table (inet family), and with it every address
fqdngate installed. Removing a table that is not there is not an error.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.OutOrStdout()) },
	}
	cmd.Flags().StringVar(&o.table, "table", config.DefaultTable, "`NAME` of fqdngate's table (inet family)")
	cmd.Flags().StringVar(&o.config, "config", "", "take the table name from this configuration `FILE`")
	_ = cmd.MarkFlagFilename("config", "yaml", "yml")
	return cmd
}

func (o *teardownOptions) run(stdout io.Writer) error {
	if o.config != "" {
		c, err := loadOrLocal(o.config, false)
		if err != nil {
			return err
		}
		o.table = c.Enforcer.Table
	}
	if err := enforce.Teardown(o.table, nil); err != nil {
		return runtimeError(err)
	}
	fmt.Fprintf(stdout, "table inet %s removed (or was not there)\n", o.table)
	return nil
}
