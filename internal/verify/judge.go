package verify

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/monitor"
)

// answeredScan bounds the ledger entries read to list the names
// answered for an address (an explanation, not the verdict).
const answeredScan = 64

// Judge decides flows against the ledger.
type Judge struct {
	Ledger *ledger.Ledger
	// Global is scope global: an answer to any client counts.
	Global bool
	// Verifies reports whether rule verifies port; nil: every rule
	// verifies every port it is asked about.
	Verifies func(group, rule string, port uint16) bool
	// HTTPPorts are the verified ports that carry HTTP, not TLS.
	HTTPPorts []uint16
}

// Verdict is the judgement of one flow.
type Verdict struct {
	Pass bool
	// Reason is monitor.Allowed when Pass, else the drop reason.
	Reason monitor.Reason
	// Sent is the name the flow carried; Answered the live names the
	// ledger holds for this client and address.
	Sent     string
	Answered []string
	ECH      bool
	// Unverified: the flow passed because no rule that opened the
	// address verifies this port (verify: false).
	Unverified bool
	Message    string
}

// IsHTTP reports whether port carries HTTP.
func (j *Judge) IsHTTP(port uint16) bool { return slices.Contains(j.HTTPPorts, port) }

// Inspect parses the first bytes of a flow to port: the name in it, and
// ErrIncomplete while more bytes are needed.
func (j *Judge) Inspect(port uint16, b []byte) (name string, ech bool, err error) {
	if j.IsHTTP(port) {
		name, err = ParseRequestHost(b)
		return name, false, err
	}
	h, err := ParseClientHello(b)
	return h.ServerName, h.ECH, err
}

// Decide judges a flow from client to addr:port whose first bytes said
// name (parseErr: why they said nothing usable). The flow passes only
// when the ledger holds a live entry (client, name, addr): the queried
// name counts, its CNAME chain does not.
func (j *Judge) Decide(now time.Time, client, addr netip.Addr, port uint16, name string, ech bool, parseErr error) Verdict {
	client, addr = client.Unmap(), addr.Unmap()
	v := Verdict{Sent: name, ECH: ech}
	if parseErr == nil && name != "" && j.answered(now, client, addr, name) {
		v.Pass, v.Reason = true, monitor.Allowed
		v.Message = fmt.Sprintf("%s was answered with %s", name, addr)
		return v
	}
	// Not the name answered: the entries of this client for the address
	// say whether a rule that opened it verifies the port at all, and
	// name what was answered. A shared CDN address is in many clients'
	// entries, so this walk is kept off the path of a flow that passes.
	who := client
	if j.Global {
		who = netip.Addr{}
	}
	entries, _ := j.Ledger.Select(ledger.Filter{Client: who, Addr: addr}, answeredScan)
	for _, e := range entries {
		if !e.Live(now) {
			continue
		}
		if !slices.Contains(v.Answered, e.Name) {
			v.Answered = append(v.Answered, e.Name)
		}
		if j.Verifies != nil && !slices.ContainsFunc(e.Rules, func(r string) bool { return j.Verifies(e.Group, r, port) }) {
			v.Pass, v.Unverified, v.Reason = true, true, monitor.Allowed
			v.Message = fmt.Sprintf("rules %v of %s do not verify port %d", e.Rules, e.Group, port)
			return v
		}
	}
	http := j.IsHTTP(port)
	switch {
	case errors.Is(parseErr, ErrNoStart) || errors.Is(parseErr, ErrSegmentsDisagree) || errors.Is(parseErr, ErrTwoStarts):
		v.Reason = monitor.NotTLS
		if http {
			v.Reason = monitor.HostMismatch
		}
		v.Message = fmt.Sprintf("the first bytes on port %d cannot be judged: %v", port, parseErr)
		return v
	case parseErr != nil && http:
		v.Reason = monitor.HostMismatch
		v.Message = fmt.Sprintf("the first bytes on port %d are not an HTTP request head within %d bytes: %v", port, MaxRequestHead, parseErr)
		return v
	case parseErr != nil:
		v.Reason = monitor.NotTLS
		v.Message = fmt.Sprintf("the first bytes on port %d are not a TLS ClientHello: %v", port, parseErr)
		if errors.Is(parseErr, ErrIncomplete) || errors.Is(parseErr, ErrTooLong) {
			v.Message = fmt.Sprintf("no whole ClientHello on port %d within the bounds (%d bytes, %d segments, %s): %v",
				port, MaxHelloBytes, MaxSegments, MaxWait, parseErr)
		}
		return v
	case name == "" && http:
		v.Reason = monitor.HostMismatch
		v.Message = "the HTTP request has no Host"
		return v
	case name == "":
		v.Reason = monitor.SNIMissing
		v.Message = "the ClientHello has no server_name"
		return v
	}
	v.Reason = monitor.SNIMismatch
	what := "server name"
	if http {
		v.Reason, what = monitor.HostMismatch, "Host"
	}
	v.Message = fmt.Sprintf("%s %q was not answered with %s to %s; answered for it: %v", what, name, addr, client, v.Answered)
	if len(v.Answered) == 0 {
		v.Message = fmt.Sprintf("%s %q was not answered with %s to %s, and no name is live for it", what, name, addr, client)
	}
	return v
}

// nameScan bounds the entries read for one client and name: the
// addresses it was answered with (enforcer.max_addrs_per_name is 256 by
// default).
const nameScan = 1024

// answered reports whether the ledger holds a live entry (client, name,
// addr). The client's list for the name is short, where the address's
// list of a CDN edge is long; in scope global the address's list is the
// only index.
func (j *Judge) answered(now time.Time, client, addr netip.Addr, name string) bool {
	f := ledger.Filter{Client: client, Name: name}
	if j.Global {
		f = ledger.Filter{Addr: addr, Name: name}
	}
	entries, _ := j.Ledger.Select(f, nameScan)
	return slices.ContainsFunc(entries, func(e ledger.Entry) bool { return e.Addr == addr && e.Live(now) })
}
