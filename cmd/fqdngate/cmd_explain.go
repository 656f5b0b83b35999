package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fqdngate/fqdngate/internal/api"
	"github.com/fqdngate/fqdngate/internal/monitor"
)

type explainOptions struct {
	client netip.Addr
	port   string
	json   bool
	apiFlags
	now func() time.Time
}

func newExplainCmd() *cobra.Command {
	o := explainOptions{now: time.Now}
	cmd := &cobra.Command{
		Use:   "explain ADDR [--client IP] [--port tcp/443] [--api ADDR | --config FILE] [--json]",
		Short: "Why the running daemon drops (or allows) an address",
		Long: `Ask the running daemon why packets from a client to an address are dropped,
or that they are allowed, with the name and CNAME chain that led to it.

With --port: that port. Without: the client's latest drop for the address
first (reason, port, when), then what is open now.`,
		Example: `  fqdngate explain 203.0.113.7 --client 192.0.2.10
  fqdngate explain --client 192.0.2.10 --port tcp/8443 203.0.113.7`,
		Args: exactArgs("ADDR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := netip.ParseAddr(args[0])
			if err != nil {
				return usageErrorf("%q is not an IP address", args[0])
			}
			return o.run(cmd.OutOrStdout(), addr)
		},
	}
	cmd.Flags().Var(addrValue{&o.client}, "client", "the client IP that was dropped (default: whoever last got the address)")
	cmd.Flags().Var(portValue{&o.port}, "port", "the port of the dropped packet, e.g. tcp/443 (default: the latest drop and what is open now)")
	cmd.Flags().BoolVar(&o.json, "json", false, "print the API's JSON")
	o.apiFlags.add(cmd)
	return cmd
}

func (o *explainOptions) run(stdout io.Writer, addr netip.Addr) error {
	base, _, err := o.base()
	if err != nil {
		return err
	}
	q := url.Values{"addr": {addr.String()}}
	if o.client.IsValid() {
		q.Set("client", o.client.String())
	}
	if o.port != "" {
		q.Set("port", o.port)
	}
	var ex api.ExplainResponse
	if err := getJSON(base, "/api/v1/explain", q, &ex); err != nil {
		return runtimeError(err)
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(ex); err != nil {
			return runtimeError(err)
		}
		return nil
	}
	if d := ex.LatestDrop; d != nil {
		what := "latest drop"
		if d.WouldDrop {
			what = "latest would-drop"
		}
		fmt.Fprintf(stdout, "%s: reason %s, port %s, at %s (%s ago)\n", what, d.Reason, orDash(d.Port),
			d.Time.UTC().Format(time.RFC3339), o.now().Sub(d.Time).Round(time.Second))
		fmt.Fprintf(stdout, "  %s\n\nnow: ", d.Message)
	}
	writeExplanation(stdout, ex.Explanation)
	return nil
}

func writeExplanation(w io.Writer, ex monitor.Explanation) {
	fmt.Fprintln(w, ex.Message)
	fmt.Fprintf(w, "  reason: %s\n", ex.Reason)
	if ex.Name != "" {
		by := ""
		if ex.Node != "" {
			by = " (answered by " + ex.Node + ")"
		}
		fmt.Fprintf(w, "  name:   %s%s\n", strings.Join(append([]string{ex.Name}, ex.Chain...), " → "), by)
		fmt.Fprintf(w, "  rules:  %s on %s\n", strings.Join(ex.Rules, ", "), strings.Join(ex.Ports, " "))
		fmt.Fprintf(w, "  expiry: %s (ttl %gs)\n", ex.Expires.Format(time.RFC3339), ex.TTL)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
