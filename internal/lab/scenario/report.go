package scenario

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"text/tabwriter"

	"github.com/fqdngate/fqdngate/internal/lab"
)

// Totals sums a device's endpoint stats.
type Totals struct{ Attempts, OK, Blocked, Denied, Failed int }

// Sum adds up a report's stats.
func Sum(r *lab.DeviceReport) Totals {
	var t Totals
	for _, s := range r.Stats {
		t.Attempts += s.Attempts
		t.OK += s.OK
		t.Blocked += s.Blocked
		t.Denied += s.Denied
		t.Failed += s.Failed
	}
	return t
}

// BlockedNeverResolved lists the addresses the classic device was blocked
// on that the classic firewall never resolved itself, and how many blocked
// addresses there were in all.
func (r *Result) BlockedNeverResolved() (never []netip.Addr, all int) {
	resolved := make(map[netip.Addr]bool, len(r.ClassicResolved))
	for _, a := range r.ClassicResolved {
		resolved[a] = true
	}
	seen := make(map[netip.Addr]bool)
	for _, s := range r.Classic.Stats {
		for a := range s.BlockedAddrs {
			if seen[a] {
				continue
			}
			seen[a] = true
			if !resolved[a] {
				never = append(never, a)
			}
		}
	}
	return never, len(seen)
}

func pct(n, of int) string {
	if of == 0 {
		return "-"
	}
	return fmt.Sprintf("%d%%", (n*100+of/2)/of)
}

// WriteTable prints the side-by-side table, the session, the probes and
// the verdict.
func (r *Result) WriteTable(w io.Writer) error {
	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tPORT\t| tries\tok\tblocked\t| tries\tok\tblocked")
	for i, c := range r.Classic.Stats {
		g := r.Gate.Stats[i]
		fmt.Fprintf(tw, "%s\t%s/%d\t| %d\t%d\t%d\t| %d\t%d\t%d\n", c.Host, c.Proto, c.Port,
			c.Attempts, c.OK, c.Blocked+c.Denied+c.Failed, g.Attempts, g.OK, g.Blocked+g.Denied+g.Failed)
	}
	ct, gt := Sum(r.Classic), Sum(r.Gate)
	cbad, gbad := ct.Blocked+ct.Denied+ct.Failed, gt.Blocked+gt.Denied+gt.Failed
	fmt.Fprintf(tw, "TOTAL\t\t| %d\t%d\t%d (%s)\t| %d\t%d\t%d (%s)\n",
		ct.Attempts, ct.OK, cbad, pct(cbad, ct.Attempts), gt.Attempts, gt.OK, gbad, pct(gbad, gt.Attempts))
	if err := tw.Flush(); err != nil {
		return err
	}
	// The group headings sit over the column bars of the header line.
	head, _, _ := bytes.Cut(table.Bytes(), []byte("\n"))
	first := bytes.IndexByte(head, '|')
	second := first + 1 + bytes.IndexByte(head[first+1:], '|')
	group := fmt.Sprintf("%*s%-*s%s\n", first, "", second-first, "| CLASSIC FIREWALL", "| FQDNGATE")
	if _, err := io.WriteString(w, group); err != nil {
		return err
	}
	if _, err := w.Write(table.Bytes()); err != nil {
		return err
	}
	never, blockedAddrs := r.BlockedNeverResolved()
	fmt.Fprintf(w, "\nclassic firewall: %d distinct addresses blocked, %d of them never seen by its own resolver; %d packets dropped\n",
		blockedAddrs, len(never), r.ClassicBlockedPackets)
	fmt.Fprintf(w, "fqdngate:         %d packets dropped\n", r.GateDrops)
	fmt.Fprintf(w, "\nlong-lived %s session (ping every 2s, %s):\n", r.Gate.Session.Endpoint, r.Duration)
	for _, s := range []struct {
		name string
		st   lab.SessionStat
	}{{"classic firewall", r.Classic.Session}, {"fqdngate", r.Gate.Session}} {
		fmt.Fprintf(w, "  %-17s %s\n", s.name+":", sessionLine(s.st))
	}
	fmt.Fprintf(w, "\nDNS exfiltration (device asks <base32 secret>.x.attacker.example):\n")
	fmt.Fprintf(w, "  %-17s answer %s, reached the upstream %d time(s)\n", "classic firewall:", r.Classic.Probes[r.ClassicExfil], r.ClassicExfilUpstream)
	fmt.Fprintf(w, "  %-17s answer %s, reached the upstream %d time(s)\n", "fqdngate:", r.Gate.Probes[r.GateExfil], r.GateExfilUpstream)
	fmt.Fprintf(w, "name outside every profile (%s): classic answer %s, fqdngate answer %s\n",
		r.Outside, r.Classic.Probes[r.Outside], r.Gate.Probes[r.Outside])
	fmt.Fprintf(w, "\ndomain fronting (device resolves %s, then sends server name %s to that address):\n", r.FrontingName, FrontingSNI)
	fmt.Fprintf(w, "  %-17s %s\n", "classic firewall:", r.ClassicFronting)
	fmt.Fprintf(w, "  %-17s %s\n", "fqdngate:", r.GateFronting)
	fmt.Fprintf(w, "\n%s\n", r.Verdict())
	return nil
}

func sessionLine(s lab.SessionStat) string {
	if s.Survived() {
		return fmt.Sprintf("survived, %d messages on one connection", s.Messages)
	}
	return fmt.Sprintf("broken: opened %d time(s), %d messages, %d failures (last: %s)", s.Opened, s.Messages, s.Failures, s.LastErr)
}

// GateHeld reports whether fqdngate kept the demo's promise: every allowed
// connection went through, the session survived, nothing leaked, and the
// fronted connection was reset and explained.
func (r *Result) GateHeld() bool {
	t := Sum(r.Gate)
	return t.Attempts > 0 && t.OK == t.Attempts && r.Gate.Session.Survived() && r.GateExfilUpstream == 0 && r.GateFronting.Reset && r.GateFronting.Reason == "sni-mismatch"
}

func (f Fronting) String() string {
	switch {
	case f.Passed:
		return fmt.Sprintf("let through: TLS handshake with %s completed at %s", FrontingSNI, f.Addr)
	case f.Reset:
		if f.Reason == "" {
			return fmt.Sprintf("reset at %s, not explained (%s)", f.Addr, f.Message)
		}
		return fmt.Sprintf("reset at %s and explained: %s: %s", f.Addr, f.Reason, f.Message)
	default:
		return "failed: " + f.Err
	}
}

// Verdict is the one-line conclusion.
func (r *Result) Verdict() string {
	ct, gt := Sum(r.Classic), Sum(r.Gate)
	cbad, gbad := ct.Blocked+ct.Denied+ct.Failed, gt.Blocked+gt.Denied+gt.Failed
	leak := "kept the exfiltration name off the wire"
	if r.GateExfilUpstream > 0 {
		leak = fmt.Sprintf("LEAKED the exfiltration name %d time(s)", r.GateExfilUpstream)
	}
	return fmt.Sprintf("VERDICT: the classic FQDN firewall blocked %d of %d allowed connections (%s); fqdngate blocked %d of %d (%s) and %s.",
		cbad, ct.Attempts, pct(cbad, ct.Attempts), gbad, gt.Attempts, pct(gbad, gt.Attempts), leak)
}
