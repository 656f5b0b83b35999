package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/fqdngate/fqdngate/internal/api"
	"github.com/fqdngate/fqdngate/internal/catalog"
	"github.com/fqdngate/fqdngate/internal/config"
	"github.com/fqdngate/fqdngate/internal/monitor"
	"github.com/fqdngate/fqdngate/internal/suggest"
)

// apiFlags are the flags of the commands that ask the running daemon.
type apiFlags struct {
	addr *string
	file *string
}

func addAPIFlags(fs *flag.FlagSet) apiFlags {
	return apiFlags{
		addr: fs.String("api", config.DefaultAPIListen, "the daemon's API `address` (listen.api)"),
		file: fs.String("config", "", "take the API address from this configuration `file`"),
	}
}

// base returns the daemon's API URL.
func (f apiFlags) base(stderr io.Writer) (string, *config.Config, int) {
	addr := *f.addr
	var c *config.Config
	if *f.file != "" {
		var code int
		if c, code = loadOrLocal(*f.file, stderr); c == nil {
			return "", nil, code
		}
		addr = c.Derived.API.String()
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		fmt.Fprintf(stderr, "--api %q is not IP:port\n", addr)
		return "", nil, exitUsage
	}
	return "http://" + ap.String(), c, exitOK
}

// getJSON asks the daemon and decodes its answer into v.
func getJSON(base, path string, q url.Values, v any) error {
	client := &http.Client{Timeout: 5 * time.Second}
	u := base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	resp, err := client.Get(u)
	if err != nil {
		return fmt.Errorf("cannot reach fqdngate's API at %s (is 'fqdngate run' up, with this listen.api?): %w", base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s", e.Param, e.Error)
		}
		return fmt.Errorf("%s: %s", u, resp.Status)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s: %w", u, err)
	}
	return nil
}

func cmdExplain(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("explain", "explain ADDR [--client IP] [--port tcp/443] [--api ADDR | --config FILE] [--json]", stderr)
	client := fs.String("client", "", "the client `IP` that was dropped (default: whoever last got the address)")
	port := fs.String("port", "", "the `port` of the dropped packet, e.g. tcp/443")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	af := addAPIFlags(fs)
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if code, stop := parse(fs, args); stop {
			return code
		}
		fmt.Fprintln(stderr, "explain: an address is required, e.g. fqdngate explain 203.0.113.7 --client 192.0.2.10")
		return exitUsage
	}
	addr := args[0]
	if code, stop := parse(fs, args[1:]); stop {
		return code
	}
	if _, err := netip.ParseAddr(addr); err != nil {
		fmt.Fprintf(stderr, "explain: %q is not an IP address\n", addr)
		return exitUsage
	}
	base, _, code := af.base(stderr)
	if base == "" {
		return code
	}
	q := url.Values{"addr": {addr}}
	if *client != "" {
		q.Set("client", *client)
	}
	if *port != "" {
		q.Set("port", *port)
	}
	var ex monitor.Explanation
	if err := getJSON(base, "/api/v1/explain", q, &ex); err != nil {
		fmt.Fprintln(stderr, "fqdngate:", err)
		return exitRuntime
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(ex)
		return exitOK
	}
	fmt.Fprintln(stdout, ex.Message)
	fmt.Fprintf(stdout, "  reason: %s\n", ex.Reason)
	if ex.Name != "" {
		fmt.Fprintf(stdout, "  name:   %s\n", strings.Join(append([]string{ex.Name}, ex.Chain...), " → "))
		fmt.Fprintf(stdout, "  rules:  %s on %s\n", strings.Join(ex.Rules, ", "), strings.Join(ex.Ports, " "))
		fmt.Fprintf(stdout, "  expiry: %s (ttl %gs)\n", ex.Expires.Format(time.RFC3339), ex.TTL)
	}
	return exitOK
}

func cmdSuggest(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("suggest", "suggest [--api ADDR | --config FILE]", stderr)
	af := addAPIFlags(fs)
	if code, stop := parse(fs, args); stop {
		return code
	}
	base, c, code := af.base(stderr)
	if base == "" {
		return code
	}
	var names api.NamesResponse
	if err := getJSON(base, "/api/v1/names", nil, &names); err != nil {
		fmt.Fprintln(stderr, "fqdngate:", err)
		return exitRuntime
	}
	cat, err := catalog.Default()
	if err != nil {
		fmt.Fprintln(stderr, "fqdngate:", err)
		return exitRuntime
	}
	var ups []string
	if c != nil {
		ups = c.Upstreams
	} else if sys, err := config.SystemUpstreams("/etc/resolv.conf"); err == nil {
		ups = sys
	}
	if len(ups) == 0 {
		ups = []string{"198.51.100.53"}
	}
	if err := suggest.Build(names.Names, cat).WriteConfig(stdout, ups); err != nil {
		fmt.Fprintln(stderr, "fqdngate:", err)
		return exitRuntime
	}
	return exitOK
}
