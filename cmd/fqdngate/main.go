// Command fqdngate is a DNS resolver and firewall in one: it answers only
// for allowed names, and installs exactly the answered addresses, for the
// asking client and the rule's ports, in nftables before releasing the
// answer. See README.md and DESIGN.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/fqdngate/fqdngate/internal/config"
	"github.com/fqdngate/fqdngate/internal/enforce"
	"github.com/fqdngate/fqdngate/internal/gateway"
	"github.com/fqdngate/fqdngate/internal/gcfloor"
)

// Exit codes (DESIGN section 6).
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

const usage = `fqdngate: DNS resolver and egress firewall for allow-listed FQDNs

Usage:
  fqdngate run      [--config FILE]   serve DNS and enforce (or observe)
  fqdngate validate  --config FILE    check a configuration; print the effective policy
  fqdngate teardown [--table NAME]    remove fqdngate's nftables table
  fqdngate catalog   list | show NAME | export NAME --format yaml|json|csv|config
                                      the built-in Azure endpoint catalog
  fqdngate explain  ADDR [--client IP] [--port tcp/443] [--json]
                                      why the running daemon drops (or allows) an address
  fqdngate suggest                    a configuration allowing what the daemon has seen
  fqdngate check    [--profile NAME ...] [--host HOST:PORT ...] [--json]
                                      reachability and TLS-interception report
  fqdngate coverage --service-tags FILE [--profile NAME ...] [--api ADDR | --resolve] [--asn-prefixes FILE] [--json]
                                      which endpoints an Azure service-tag rule could carry
  fqdngate version                    print the version

Without --config, run observes this host's queries on 127.0.0.1:5353,
forwarding to the nameservers of /etc/resolv.conf, and enforces nothing.

Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration,
3 check: a required endpoint failed.
Run 'fqdngate COMMAND --help' for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(rest, stderr)
	case "validate":
		return cmdValidate(rest, stdout, stderr)
	case "teardown":
		return cmdTeardown(rest, stdout, stderr)
	case "catalog":
		return cmdCatalog(rest, stdout, stderr)
	case "explain":
		return cmdExplain(rest, stdout, stderr)
	case "suggest":
		return cmdSuggest(rest, stdout, stderr)
	case "check":
		return cmdCheck(rest, stdout, stderr)
	case "coverage":
		return cmdCoverage(rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "fqdngate", versionString())
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "fqdngate: unknown command %q\n\n%s", cmd, usage)
	return exitUsage
}

// newFlags makes a flag set whose --help prints to stderr and exits 0
// through the caller.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: fqdngate %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse returns an exit code when the command should stop now.
func parse(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, true
		}
		return exitUsage, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return exitUsage, true
	}
	return 0, false
}

func cmdRun(args []string, stderr io.Writer) int {
	fs := newFlags("run", "run [--config FILE]", stderr)
	file := fs.String("config", "", "configuration `file` (YAML); without it: observe on "+config.LocalDNS)
	if code, stop := parse(fs, args); stop {
		return code
	}
	c, code := loadOrLocal(*file, stderr)
	if c == nil {
		return code
	}
	log := newLogger(c, stderr)
	defer gcfloor.Start(gcfloor.Default)()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	reloads := make(chan chan error)
	opts := gateway.Options{Reload: reloads}
	if *file != "" {
		path := *file
		opts.Load = func() (*config.Config, error) { return config.Load(path) }
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
		return exitRuntime
	}
	return exitOK
}

func loadOrLocal(file string, stderr io.Writer) (*config.Config, int) {
	if file == "" {
		ups, err := config.SystemUpstreams("/etc/resolv.conf")
		if err != nil {
			fmt.Fprintln(stderr, "fqdngate:", err)
			return nil, exitUsage
		}
		c, err := config.Local(ups)
		if err != nil {
			fmt.Fprintln(stderr, "fqdngate:", err)
			return nil, exitUsage
		}
		return c, exitOK
	}
	c, err := config.Load(file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		if errors.Is(err, config.ErrInvalid) {
			return nil, exitUsage
		}
		return nil, exitRuntime
	}
	return c, exitOK
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", "validate --config FILE", stderr)
	file := fs.String("config", "", "configuration `file` to check (required)")
	if code, stop := parse(fs, args); stop {
		return code
	}
	if *file == "" {
		fmt.Fprintln(stderr, "validate: --config is required")
		fs.Usage()
		return exitUsage
	}
	c, code := loadOrLocal(*file, stderr)
	if c == nil {
		return code
	}
	fmt.Fprintf(stdout, "%s: valid\n\n", *file)
	if err := c.WriteEffective(stdout); err != nil {
		fmt.Fprintln(stderr, err)
		return exitRuntime
	}
	return exitOK
}

func cmdTeardown(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("teardown", "teardown [--table NAME | --config FILE]", stderr)
	table := fs.String("table", config.DefaultTable, "name of fqdngate's `table` (inet family)")
	file := fs.String("config", "", "take the table name from this configuration `file`")
	if code, stop := parse(fs, args); stop {
		return code
	}
	if *file != "" {
		c, code := loadOrLocal(*file, stderr)
		if c == nil {
			return code
		}
		*table = c.Enforcer.Table
	}
	if err := enforce.Teardown(*table, nil); err != nil {
		fmt.Fprintln(stderr, "fqdngate:", err)
		return exitRuntime
	}
	fmt.Fprintf(stdout, "table inet %s removed (or was not there)\n", *table)
	return exitOK
}

func newLogger(c *config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.Derived.LogLevel}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return "dev"
}
