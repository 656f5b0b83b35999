package main

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/fqdngate/fqdngate/internal/api"
	"github.com/fqdngate/fqdngate/internal/catalog"
	"github.com/fqdngate/fqdngate/internal/config"
	"github.com/fqdngate/fqdngate/internal/suggest"
)

// suggestFallbackUpstream is the placeholder upstream of a suggestion
// when neither --config nor /etc/resolv.conf names one.
const suggestFallbackUpstream = "198.51.100.53"

type suggestOptions struct {
	apiFlags
}

func newSuggestCmd() *cobra.Command {
	var o suggestOptions
	cmd := &cobra.Command{
		Use:   "suggest [--api ADDR | --config FILE]",
		Short: "A configuration allowing what the daemon has seen",
		Long: `Print a configuration that allows the names the running daemon has seen
clients ask for, with the catalog's profiles where they fit.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.OutOrStdout()) },
	}
	o.apiFlags.add(cmd)
	return cmd
}

func (o *suggestOptions) run(stdout io.Writer) error {
	base, c, err := o.base()
	if err != nil {
		return err
	}
	var names api.NamesResponse
	if err := getJSON(base, "/api/v1/names", nil, &names); err != nil {
		return runtimeError(err)
	}
	cat, err := catalog.Default()
	if err != nil {
		return runtimeError(err)
	}
	var ups []string
	if c != nil {
		ups = c.Upstreams
	} else if sys, err := config.SystemUpstreams("/etc/resolv.conf"); err == nil {
		ups = sys
	}
	if len(ups) == 0 {
		ups = []string{suggestFallbackUpstream}
	}
	if err := suggest.Build(names.Names, cat).WriteConfig(stdout, ups); err != nil {
		return runtimeError(err)
	}
	return nil
}
