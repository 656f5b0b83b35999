package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/fqdngate/fqdngate/internal/catalog"
	"github.com/fqdngate/fqdngate/internal/check"
	"github.com/fqdngate/fqdngate/internal/config"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// exitCheckFailed is check's code when a required endpoint failed.
const exitCheckFailed = 3

// stringList collects a repeated flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", "check [--profile NAME ...] [--host HOST:PORT ...] [flags]", stderr)
	var profiles, hosts, issuers stringList
	fs.Var(&profiles, "profile", "catalog `profile` whose endpoints to probe (repeatable)")
	fs.Var(&hosts, "host", "`HOST:PORT` to probe, e.g. contoso.azure-devices.net:8883 or time.example:udp/123 (repeatable)")
	region := fs.String("region", "", "Azure `region` for <region>")
	cloud := fs.String("cloud", catalog.CloudPublic, "`cloud`: public, usgov or china")
	values := paramFlags{}
	fs.Var(values, "param", "`NAME=VALUE` for a placeholder (repeatable)")
	server := fs.String("dns", "", "resolver `IP[:port]` to ask (default: the first nameserver of /etc/resolv.conf)")
	asJSON := fs.Bool("json", false, "print the JSON report (schema in README)")
	parallel := fs.Int("parallel", 8, "probes at once (1-64)")
	timeout := fs.Duration("timeout", 5*time.Second, "time for each step of a probe")
	deadline := fs.Duration("deadline", 2*time.Minute, "time for the whole run")
	caFile := fs.String("ca-file", "", "PEM `file` of roots to verify against instead of the system's")
	fs.Var(&issuers, "expect-issuer", "root CA `name` endpoints may chain to (repeatable; default: the roots Microsoft uses)")
	if code, stop := parse(fs, args); stop {
		return code
	}
	if len(profiles)+len(hosts) == 0 {
		fmt.Fprintln(stderr, "check: give at least one --profile or --host")
		fs.Usage()
		return exitUsage
	}
	if *parallel < 1 || *parallel > 64 || *timeout <= 0 || *deadline <= 0 {
		fmt.Fprintln(stderr, "check: --parallel is 1-64, --timeout and --deadline must be positive")
		return exitUsage
	}
	if *region != "" {
		values["region"] = *region
	}
	targets, code := checkTargets(profiles, hosts, *cloud, values, stderr)
	if targets == nil {
		return code
	}
	opt := check.Options{Timeout: *timeout, Parallel: *parallel, ExpectedIssuers: check.DefaultExpectedIssuers}
	if len(issuers) > 0 {
		opt.ExpectedIssuers = issuers
	}
	var err error
	if opt.DNS, err = checkResolver(*server); err != nil {
		fmt.Fprintln(stderr, "check:", err)
		return exitUsage
	}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			fmt.Fprintln(stderr, "check:", err)
			return exitUsage
		}
		opt.Roots = x509.NewCertPool()
		if !opt.Roots.AppendCertsFromPEM(pem) {
			fmt.Fprintf(stderr, "check: %s holds no PEM certificate\n", *caFile)
			return exitUsage
		}
	}
	if f, ok := stderr.(*os.File); ok && isTerminal(f) && !*asJSON {
		opt.Progress = func(done, total int) { fmt.Fprintf(stderr, "\rchecked %d/%d", done, total) }
	}
	ctx, cancel := context.WithTimeout(context.Background(), *deadline)
	defer cancel()
	results := check.Run(ctx, targets, opt)
	if opt.Progress != nil {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if *asJSON {
		err = check.WriteJSON(stdout, results)
	} else {
		err = check.WriteTable(stdout, results)
	}
	if err != nil {
		fmt.Fprintln(stderr, "check:", err)
		return exitRuntime
	}
	if check.Summarize(results).RequiredFailed > 0 {
		return exitCheckFailed
	}
	return exitOK
}

// checkTargets expands profiles (with includes, for the cloud, with the
// parameters) and --host flags into targets.
func checkTargets(profiles, hosts []string, cloud string, values map[string]string, stderr io.Writer) ([]check.Target, int) {
	if !slices.Contains(catalog.Clouds, cloud) {
		fmt.Fprintf(stderr, "check: --cloud %q is not one of %s\n", cloud, strings.Join(catalog.Clouds, ", "))
		return nil, exitUsage
	}
	cat, err := catalog.Default()
	if err != nil {
		fmt.Fprintln(stderr, "fqdngate:", err)
		return nil, exitRuntime
	}
	var out []check.Target
	seen := map[check.Target]bool{}
	for _, p := range profiles {
		eps, err := cat.Resolve(p, cloud, values)
		if err != nil {
			fmt.Fprintln(stderr, "check:", err)
			return nil, exitUsage
		}
		for _, ep := range eps {
			for _, pr := range ep.Ports {
				for port := pr.Lo; ; port++ {
					t := check.Target{Profile: p, Host: ep.Pattern.Text, Proto: policy.ProtoName(pr.Proto), Port: port,
						Required: ep.Entry.Required(), Purpose: ep.Entry.Purpose}
					if !seen[t] {
						seen[t] = true
						out = append(out, t)
					}
					if port == pr.Hi || pr.Hi-pr.Lo > 16 {
						break
					}
				}
			}
		}
	}
	for _, h := range hosts {
		t, err := check.ParseHostPort(h)
		if err != nil {
			fmt.Fprintln(stderr, "check:", err)
			return nil, exitUsage
		}
		out = append(out, t)
	}
	return out, exitOK
}

func checkResolver(s string) (string, error) {
	if s == "" {
		ups, err := config.SystemUpstreams("/etc/resolv.conf")
		if err != nil || len(ups) == 0 {
			return "", fmt.Errorf("no --dns and no nameserver in /etc/resolv.conf: %v", err)
		}
		s = ups[0]
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.String(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", fmt.Errorf("--dns %q is not IP or IP:port", s)
	}
	return netip.AddrPortFrom(a, 53).String(), nil
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
