package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/fqdngate/fqdngate/internal/config"
	"github.com/fqdngate/fqdngate/internal/gateway"
	"github.com/fqdngate/fqdngate/internal/gcfloor"
)

type runOptions struct {
	config string
	strict bool
}

func newRunCmd(stderr io.Writer) *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run [--config FILE]",
		Short: "Serve DNS and enforce (or observe)",
		Long: `Serve DNS and enforce the configuration's policy in nftables (or observe).

Without --config: observe this host's queries on ` + config.LocalDNS + `, forwarding
to the nameservers of /etc/resolv.conf, and enforce nothing. SIGHUP re-reads
the configuration. Logs go to stderr.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error { return o.run(stderr) },
	}
	cmd.Flags().StringVar(&o.config, "config", "", "configuration `FILE` (YAML); without it: observe on "+config.LocalDNS)
	_ = cmd.MarkFlagFilename("config", "yaml", "yml")
	cmd.Flags().BoolVar(&o.strict, "strict", false, "refuse to start (and to reload) with a configuration that has warnings")
	return cmd
}

func (o *runOptions) run(stderr io.Writer) error {
	c, err := loadOrLocal(o.config, o.strict)
	if err != nil {
		return err
	}
	log := newLogger(c, stderr)
	defer gcfloor.Start(gcfloor.Default)()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	reloads := make(chan chan error)
	opts := gateway.Options{Reload: reloads}
	if o.config != "" {
		path, strict := o.config, o.strict
		opts.Load = func() (*config.Config, error) { return config.Load(path, config.WithStrict(strict)) }
	}
	// SIGHUP re-reads the configuration; the outcome is logged (and
	// POST /api/v1/reload returns it).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			done := make(chan error, 1)
			select {
			case reloads <- done:
				if err := <-done; err != nil {
					log.Error("SIGHUP", "err", err)
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := gateway.Run(ctx, c, log, opts); err != nil {
		log.Error("fqdngate stopped", "err", err)
		return &exitError{code: exitRuntime}
	}
	return nil
}
