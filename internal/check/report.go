package check

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// SchemaVersion is the JSON report's version; a field is never renamed or
// removed without raising it.
const SchemaVersion = 1

// Report is `fqdngate check --json`.
type Report struct {
	Schema  int      `json:"schema"`
	Summary Summary  `json:"summary"`
	Results []Result `json:"results"`
}

// WriteJSON writes the report.
func WriteJSON(w io.Writer, rs []Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(Report{Schema: SchemaVersion, Summary: Summarize(rs), Results: rs})
}

// WriteTable prints one table per profile (targets given with --host last)
// and a summary line.
func WriteTable(w io.Writer, rs []Result) error {
	var order []string
	groups := map[string][]Result{}
	for _, r := range rs {
		g := r.Profile
		if g == "" {
			g = "--host"
		}
		if _, ok := groups[g]; !ok {
			order = append(order, g)
		}
		groups[g] = append(groups[g], r)
	}
	for i, g := range order {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s\n", g)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  STATUS\tENDPOINT\tADDRESS\tTLS\tCAUSE")
		for _, r := range groups[g] {
			status := strings.ToUpper(r.Status)
			if r.Status == "fail" && !r.Required {
				status = "FAIL (optional)"
			}
			addr := "-"
			if r.Addr.IsValid() {
				addr = r.Addr.String()
			}
			tlsInfo := "-"
			if r.TLS != nil {
				tlsInfo = r.TLS.Version + ", " + r.TLS.Root
			}
			cause := "-"
			if len(r.Findings) > 0 {
				f := r.Findings[0]
				cause = f.Cause + ": " + f.Detail
				if len(r.Findings) > 1 {
					cause += fmt.Sprintf(" (+%d more)", len(r.Findings)-1)
				}
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", status, r.Target, addr, tlsInfo, cause)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	s := Summarize(rs)
	verdict := "every required endpoint passed"
	if s.RequiredFailed > 0 {
		verdict = fmt.Sprintf("%d required endpoint(s) failed", s.RequiredFailed)
	}
	_, err := fmt.Fprintf(w, "\n%d endpoints: %d passed, %d failed, %d not probed (wildcards): %s\n",
		s.Total, s.Passed, s.Failed, s.Skipped, verdict)
	return err
}
