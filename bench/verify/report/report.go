package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"
)

// Targets of flow verification (issue 24).
const (
	// TargetPerCore is verified new flows a second on one core.
	TargetPerCore = 20_000
	// TargetAddedP99 bounds what enforcing adds to a flow's first byte
	// at p99, against verification off in the same run.
	TargetAddedP99 = 100 * time.Microsecond
	// stealLimit is the share of the gateway's CPU the hypervisor may
	// take before a verdict is in doubt (as in the DNS report).
	stealLimit = 5
)

// Report is one run of the benchmark.
type Report struct {
	HelloBytes int           `json:"hello_bytes"`
	Clients    int           `json:"clients"`
	Duration   time.Duration `json:"duration_ns"`
	Sequential int           `json:"sequential"`
	// Modes are verify off, then enforce.
	Modes []Mode `json:"modes"`
}

// Mode is one verify mode's figures.
type Mode struct {
	Verify string `json:"verify"`
	// Rate is new flows a second (the server had the whole ClientHello)
	// from the pool of clients; Failed the flows that did not complete.
	Rate   float64 `json:"rate"`
	Flows  int64   `json:"flows"`
	Failed int64   `json:"failed"`
	// P50 and P99: from the device's connect to the server having the
	// whole ClientHello, one flow at a time; LoadP50 and LoadP99 the
	// same during the rate run.
	P50 time.Duration `json:"p50_ns"`
	P99 time.Duration `json:"p99_ns"`
	// ConnectP50 and ConnectP99 are the part of it connect took (the
	// SYN there and the SYN-ACK back), one flow at a time.
	ConnectP50 time.Duration `json:"connect_p50_ns"`
	ConnectP99 time.Duration `json:"connect_p99_ns"`
	LoadP50    time.Duration `json:"load_p50_ns"`
	LoadP99    time.Duration `json:"load_p99_ns"`
	// UserUS and SysUS are fqdngate's CPU time per flow in the rate run
	// (µs); CPUBusy, CPUSoftirq and CPUSteal shares (percent) of the time
	// of the CPU fqdngate was pinned to, over the rate run.
	UserUS     float64 `json:"user_us"`
	SysUS      float64 `json:"sys_us"`
	CPUBusy    float64 `json:"cpu_busy_pct"`
	CPUSoftirq float64 `json:"cpu_softirq_pct"`
	CPUSteal   float64 `json:"cpu_steal_pct"`
}

// PerCore is the flows a second that fqdngate's CPU time per flow
// allows one core; 0 when it used none (verification off).
func (m Mode) PerCore() float64 {
	if m.UserUS+m.SysUS <= 0 {
		return 0
	}
	return 1e6 / (m.UserUS + m.SysUS)
}

// Read reads a report bench/verify wrote with -json.
func Read(path string) (Report, error) {
	var r Report
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	if len(r.Modes) != 2 || r.Modes[0].Verify != "off" || r.Modes[1].Verify != "enforce" {
		return r, fmt.Errorf("%s: want the modes off and enforce, in that order", path)
	}
	return r, nil
}

// Write writes it as JSON.
func (r Report) Write(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func us(d time.Duration) string {
	return fmt.Sprintf("%d µs", d.Round(time.Microsecond).Microseconds())
}

// Off and Enforce are the two modes' figures.
func (r Report) Off() Mode     { return r.Modes[0] }
func (r Report) Enforce() Mode { return r.Modes[1] }

// AddedP50 and AddedP99 are what enforcing added to the time to the
// ClientHello at the server, one flow at a time.
func (r Report) AddedP50() time.Duration { return r.Enforce().P50 - r.Off().P50 }
func (r Report) AddedP99() time.Duration { return r.Enforce().P99 - r.Off().P99 }

// WriteTable writes the run's table and the ratios.
func (r Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "A device opens new TCP connections through the gateway to an allowed name's address on tcp/443, each sending a %d-byte ClientHello recorded from Go's crypto/tls (hybrid post-quantum key share, two segments), and the server reads it and closes: %d clients for %s per mode, and %d flows one at a time for the latency (from the device's connect to the server having the whole ClientHello). fqdngate is pinned to one CPU, the load side to the other.\n\n",
		r.HelloBytes, r.Clients, r.Duration, r.Sequential)
	fmt.Fprintln(w, "| verify | new flows/s | failed | fqdngate CPU per flow (user + system) | flows/s per core | its CPU: busy / softirq / steal | p50 | p99 | p50 under load | p99 under load |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, m := range r.Modes {
		perCore := "-"
		if m.Verify != "off" && m.PerCore() > 0 {
			perCore = fmt.Sprintf("%.0f", m.PerCore())
		}
		fmt.Fprintf(w, "| %s | %.0f | %d | %.1f + %.1f µs | %s | %.0f%% / %.0f%% / %.0f%% | %s | %s | %s | %s |\n", m.Verify, m.Rate, m.Failed,
			m.UserUS, m.SysUS, perCore, m.CPUBusy, m.CPUSoftirq, m.CPUSteal, us(m.P50), us(m.P99), us(m.LoadP50), us(m.LoadP99))
	}
	fmt.Fprintf(w, "\nenforce / off: %.2f× the flow rate; enforcing added %s at p50 and %s at p99, one flow at a time, of which connect (the SYN's round trip through the queue) %s at p50 (connect p50 %s off, %s enforcing).\n\n",
		r.Enforce().Rate/r.Off().Rate, us(r.AddedP50()), us(r.AddedP99()),
		us(r.Enforce().ConnectP50-r.Off().ConnectP50), us(r.Off().ConnectP50), us(r.Enforce().ConnectP50))
}

// Target is one goal checked against the run.
type Target struct {
	What, Goal, Value string
	Met               bool
	// Doubt says why the verdict is in doubt; empty when it is not.
	Doubt string
}

// Targets checks the run against the goals of issue 24. The flows per
// core come from fqdngate's CPU time per flow while pinned to one core,
// so that the load side, on the other, does not set them.
func (r Report) Targets() []Target {
	on := r.Enforce()
	doubt := ""
	if on.CPUSteal >= stealLimit {
		doubt = fmt.Sprintf("the hypervisor took %.0f%% of fqdngate's CPU (steal)", on.CPUSteal)
	}
	return []Target{
		{What: "verified new flows per second on one core (fqdngate's CPU time per flow, pinned)", Goal: fmt.Sprintf("≥ %d", TargetPerCore),
			Value: fmt.Sprintf("%.0f (%.0f flows/s reached with %d clients)", on.PerCore(), on.Rate, r.Clients), Met: on.PerCore() >= TargetPerCore, Doubt: doubt},
		{What: "added to the first byte at p99, enforce vs off in the same run", Goal: "≤ " + us(TargetAddedP99),
			Value: us(r.AddedP99()), Met: r.AddedP99() <= TargetAddedP99, Doubt: doubt},
	}
}
