package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/fqdngate/fqdngate/internal/catalog"
	"github.com/fqdngate/fqdngate/internal/check"
	"github.com/fqdngate/fqdngate/internal/config"
)

// Defaults and bounds of check's flags.
const (
	checkParallel    = 8
	checkParallelMax = 64
	checkTimeout     = 5 * time.Second
	checkDeadline    = 2 * time.Minute
)

type checkOptions struct {
	profiles, hosts []string
	catalogFlags
	dns      string
	json     bool
	parallel int
	timeout  time.Duration
	deadline time.Duration
	caFile   string
	issuers  []string
}

func newCheckCmd() *cobra.Command {
	var o checkOptions
	cmd := &cobra.Command{
		Use:   "check [--profile NAME ...] [--host HOST:PORT ...] [flags]",
		Short: "Reachability and TLS-interception report",
		Long: `Probe endpoints the way a device would and report, for each, one cause per
failure: DNS, TCP, TLS (chain, issuer, expiry, name, version, interception)
and HTTP. A host may be an IP literal (203.0.113.7:443, [2001:db8::7]:443):
it is probed directly, without DNS.

Exit 3 when a required endpoint failed.`,
		Example: `  fqdngate check --profile azure-iot-hub --param iot_hub=contoso-hub
  fqdngate check --host contoso.azure-devices.net:8883 --host time.example:udp/123 --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.OutOrStdout(), cmd.ErrOrStderr()) },
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.profiles, "profile", nil, "catalog `PROFILE` whose endpoints to probe (repeatable)")
	f.StringArrayVar(&o.hosts, "host", nil, "`HOST:PORT` to probe, e.g. contoso.azure-devices.net:8883, time.example:udp/123 or [2001:db8::7]:443 (repeatable)")
	o.add(cmd, catalog.CloudPublic, "cloud")
	f.StringVar(&o.dns, "dns", "", "resolver `IP[:PORT]` to ask (default: the first nameserver of /etc/resolv.conf)")
	f.BoolVar(&o.json, "json", false, "print the JSON report (schema in README)")
	f.IntVar(&o.parallel, "parallel", checkParallel, fmt.Sprintf("probes at once (1-%d)", checkParallelMax))
	f.DurationVar(&o.timeout, "timeout", checkTimeout, "time for each step of a probe")
	f.DurationVar(&o.deadline, "deadline", checkDeadline, "time for the whole run")
	f.StringVar(&o.caFile, "ca-file", "", "PEM `FILE` of roots to verify against instead of the system's")
	f.StringArrayVar(&o.issuers, "expect-issuer", nil, "root CA `NAME` endpoints may chain to (repeatable; default: the roots Microsoft uses)")
	_ = cmd.RegisterFlagCompletionFunc("profile", completeProfiles)
	_ = cmd.MarkFlagFilename("ca-file", "pem", "crt")
	return cmd
}

func (o *checkOptions) run(stdout, stderr io.Writer) error {
	if len(o.profiles)+len(o.hosts) == 0 {
		return usageErrorf("give at least one --profile or --host")
	}
	if o.parallel < 1 || o.parallel > checkParallelMax || o.timeout <= 0 || o.deadline <= 0 {
		return usageErrorf("--parallel is 1-%d, --timeout and --deadline must be positive", checkParallelMax)
	}
	values, err := o.values()
	if err != nil {
		return err
	}
	var hosts []check.Target
	for _, h := range o.hosts {
		t, err := check.ParseHostPort(h)
		if err != nil {
			return usageErrorf("--host: %v", err)
		}
		hosts = append(hosts, t)
	}
	cat, err := catalog.Default()
	if err != nil {
		return runtimeError(err)
	}
	targets, err := check.ProfileTargets(cat, o.profiles, o.cloud, values)
	if err != nil {
		return catalogError(err)
	}
	targets = append(targets, hosts...)
	opt := check.Options{Timeout: o.timeout, Parallel: o.parallel, ExpectedIssuers: check.DefaultExpectedIssuers}
	if len(o.issuers) > 0 {
		opt.ExpectedIssuers = o.issuers
	}
	if opt.DNS, err = resolverAddr(o.dns); err != nil {
		return err
	}
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return inputError(err)
		}
		opt.Roots = x509.NewCertPool()
		if !opt.Roots.AppendCertsFromPEM(pem) {
			return inputError(fmt.Errorf("%s holds no PEM certificate", o.caFile))
		}
	}
	if f, ok := stderr.(*os.File); ok && isTerminal(f) && !o.json {
		opt.Progress = func(done, total int) { fmt.Fprintf(stderr, "\rchecked %d/%d", done, total) }
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.deadline)
	defer cancel()
	results := check.Run(ctx, targets, opt)
	if opt.Progress != nil {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if o.json {
		err = check.WriteJSON(stdout, results)
	} else {
		err = check.WriteTable(stdout, results)
	}
	if err != nil {
		return runtimeError(err)
	}
	if check.Summarize(results).RequiredFailed > 0 {
		return &exitError{code: exitCheckFailed}
	}
	return nil
}

// resolverAddr is --dns as IP:port, or the system's first nameserver.
func resolverAddr(s string) (string, error) {
	if s == "" {
		ups, err := config.SystemUpstreams("/etc/resolv.conf")
		if err != nil || len(ups) == 0 {
			return "", inputError(fmt.Errorf("no --dns and no nameserver in /etc/resolv.conf: %v", err))
		}
		s = ups[0]
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.String(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", usageErrorf("--dns %q is not IP or IP:port", s)
	}
	return netip.AddrPortFrom(a, 53).String(), nil
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
