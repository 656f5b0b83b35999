package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

type validateOptions struct {
	config string
	strict bool
}

func newValidateCmd() *cobra.Command {
	var o validateOptions
	cmd := &cobra.Command{
		Use:   "validate --config FILE",
		Short: "Check a configuration; print the effective policy",
		Long: `Check a configuration and print the effective configuration: every
setting with its value, defaults included. Errors name the file, line,
column and field; all of them are reported at once (exit 2).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.OutOrStdout()) },
	}
	cmd.Flags().StringVar(&o.config, "config", "", "configuration `FILE` to check (required)")
	_ = cmd.MarkFlagRequired("config")
	_ = cmd.MarkFlagFilename("config", "yaml", "yml")
	cmd.Flags().BoolVar(&o.strict, "strict", false, "treat the configuration's warnings as errors (exit 2)")
	return cmd
}

func (o *validateOptions) run(stdout io.Writer) error {
	c, err := loadOrLocal(o.config, o.strict)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: valid\n\n", o.config)
	if err := c.WriteEffective(stdout); err != nil {
		return runtimeError(err)
	}
	return nil
}
