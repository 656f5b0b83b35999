package api

import (
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/fqdngate/fqdngate/internal/monitor"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// maxClientsListed bounds GET /api/v1/clients; the monitor keeps more
// than a page shows, and the group counts in /api/v1/status cover all.
const maxClientsListed = 2000

// PolicyView is the policy in force and, per group, the catalog profiles
// its rules came from; a reload replaces both.
type PolicyView struct {
	Policy   *policy.Policy
	Profiles map[string][]string
}

// GroupStatus is one client group in GET /api/v1/status.
type GroupStatus struct {
	Name  string         `json:"name"`
	CIDRs []netip.Prefix `json:"cidrs"`
	// Clients is how many clients of the group asked something.
	Clients int `json:"clients"`
	Rules   int `json:"rules"`
}

// UpstreamStatus is one upstream's exchanges and failures since the
// start; the console tells health from their rates.
type UpstreamStatus struct {
	Addr      string `json:"addr"`
	Exchanges uint64 `json:"exchanges"`
	Errors    uint64 `json:"errors"`
	// Down is true while the upstream is marked down and skipped (its
	// health check has not answered yet).
	Down bool `json:"down"`
}

// StatusResponse is GET /api/v1/status: what the overview shows. Counters
// are totals since the start; rates are the client's differences.
type StatusResponse struct {
	Mode    string        `json:"mode"`
	Started time.Time     `json:"started"`
	Now     time.Time     `json:"now"`
	Uptime  float64       `json:"uptime_seconds"`
	Groups  []GroupStatus `json:"groups"`
	// Clients counts the clients seen; Ungrouped those in no group
	// (refused); ClientsNotKept those beyond the console's bound.
	Clients        int    `json:"clients"`
	Ungrouped      int    `json:"ungrouped"`
	ClientsNotKept uint64 `json:"clients_not_kept,omitempty"`
	// Queries by decision, Drops and WouldDrops by reason.
	Queries       map[string]uint64 `json:"queries"`
	QueriesTotal  uint64            `json:"queries_total"`
	Drops         map[string]uint64 `json:"drops"`
	WouldDrops    map[string]uint64 `json:"would_drops"`
	LedgerEntries uint64            `json:"ledger_entries"`
	// SetElements is absent with backend none.
	SetElements *uint64          `json:"set_elements,omitempty"`
	Upstreams   []UpstreamStatus `json:"upstreams"`
	Ready       bool             `json:"ready"`
	NotReady    string           `json:"not_ready,omitempty"`
	// Cluster is the node's site and peers (cluster:).
	Cluster any `json:"cluster,omitempty"`
}

func (d Deps) status(w http.ResponseWriter, _ *http.Request) {
	now := time.Now()
	resp := StatusResponse{Mode: d.Mode, Started: d.Started.UTC(), Now: now.UTC(), Uptime: now.Sub(d.Started).Seconds(),
		Queries: map[string]uint64{}, Drops: map[string]uint64{}, WouldDrops: map[string]uint64{}, Upstreams: []UpstreamStatus{}}
	for _, r := range monitor.Reasons {
		resp.Drops[string(r)], resp.WouldDrops[string(r)] = 0, 0
	}
	clients, notKept := d.Monitor.Clients()
	perGroup := make(map[string]int)
	for _, c := range clients {
		perGroup[c.Group]++
	}
	resp.Clients, resp.Ungrouped, resp.ClientsNotKept = len(clients), perGroup[""], notKept
	if d.Policy != nil {
		for _, g := range d.Policy().Policy.Groups() {
			resp.Groups = append(resp.Groups, GroupStatus{Name: g.Name, CIDRs: g.Prefixes, Clients: perGroup[g.Name], Rules: len(g.Rules)})
		}
	}
	resp.Ready, resp.NotReady = true, ""
	if d.Ready != nil {
		resp.Ready, resp.NotReady = d.Ready()
	}
	if d.Cluster != nil {
		resp.Cluster = d.Cluster()
	}
	upstreams := make(map[string]*UpstreamStatus)
	for _, u := range d.Upstreams {
		upstreams[u] = &UpstreamStatus{Addr: u}
	}
	up := func(addr string) *UpstreamStatus {
		if u, ok := upstreams[addr]; ok {
			return u
		}
		u := &UpstreamStatus{Addr: addr}
		upstreams[addr] = u
		return u
	}
	mfs, err := d.Registry.Gather()
	if err != nil {
		d.Log.Warn("status: metrics not all gathered", "err", err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "fqdngate_dns_queries_total":
				n := uint64(m.GetCounter().GetValue())
				resp.Queries[label(m, "decision")] += n
				resp.QueriesTotal += n
			case "fqdngate_drops_total":
				resp.Drops[label(m, "reason")] = uint64(m.GetCounter().GetValue())
			case "fqdngate_would_drops_total":
				resp.WouldDrops[label(m, "reason")] = uint64(m.GetCounter().GetValue())
			case "fqdngate_ledger_entries":
				resp.LedgerEntries = uint64(m.GetGauge().GetValue())
			case "fqdngate_set_elements":
				n := uint64(m.GetGauge().GetValue())
				resp.SetElements = &n
			case "fqdngate_upstream_duration_seconds":
				up(label(m, "upstream")).Exchanges = m.GetHistogram().GetSampleCount()
			case "fqdngate_upstream_errors_total":
				up(label(m, "upstream")).Errors = uint64(m.GetCounter().GetValue())
			case "fqdngate_upstream_up":
				up(label(m, "upstream")).Down = m.GetGauge().GetValue() == 0
			}
		}
	}
	for _, u := range upstreams {
		resp.Upstreams = append(resp.Upstreams, *u)
	}
	slices.SortFunc(resp.Upstreams, func(a, b UpstreamStatus) int { return strings.Compare(a.Addr, b.Addr) })
	writeJSON(w, resp)
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// ClientsResponse is GET /api/v1/clients.
type ClientsResponse struct {
	Clients   []monitor.ClientSeen `json:"clients"`
	Truncated bool                 `json:"truncated"`
}

func (d Deps) clients(w http.ResponseWriter, r *http.Request) {
	clients, notKept := d.Monitor.Clients()
	group := r.URL.Query().Get("group")
	out := make([]monitor.ClientSeen, 0, min(len(clients), maxClientsListed))
	truncated := notKept > 0
	for _, c := range clients {
		if group != "" && c.Group != group {
			continue
		}
		if len(out) == maxClientsListed {
			truncated = true
			break
		}
		out = append(out, c)
	}
	writeJSON(w, ClientsResponse{Clients: out, Truncated: truncated})
}

// PolicyRule is one rule in GET /api/v1/policy.
type PolicyRule struct {
	Name string `json:"name"`
	// Source is "config" or the catalog profile and seed line, e.g.
	// "catalog azure-arc-data > azure-arc-k8s, seed 002 line 23".
	Source   string   `json:"source"`
	Patterns []string `json:"patterns"`
	Ports    []string `json:"ports"`
}

// PolicyGroup is one client group in GET /api/v1/policy.
type PolicyGroup struct {
	Name     string         `json:"name"`
	CIDRs    []netip.Prefix `json:"cidrs"`
	Profiles []string       `json:"profiles"`
	Rules    []PolicyRule   `json:"rules"`
}

// PolicyResponse is GET /api/v1/policy: the effective policy.
type PolicyResponse struct {
	Groups []PolicyGroup `json:"groups"`
	// Profiles are the catalog profiles in use by any group.
	Profiles []string `json:"profiles"`
}

func (d Deps) policy(w http.ResponseWriter, _ *http.Request) {
	resp := PolicyResponse{Groups: []PolicyGroup{}, Profiles: []string{}}
	if d.Policy == nil {
		writeJSON(w, resp)
		return
	}
	pv := d.Policy()
	for _, g := range pv.Policy.Groups() {
		pg := PolicyGroup{Name: g.Name, CIDRs: g.Prefixes, Profiles: append([]string{}, pv.Profiles[g.Name]...), Rules: []PolicyRule{}}
		for _, r := range g.Rules {
			pr := PolicyRule{Name: r.Name, Source: r.Source, Patterns: make([]string, len(r.Patterns)), Ports: make([]string, len(r.Ports))}
			for i, p := range r.Patterns {
				pr.Patterns[i] = p.String()
			}
			for i, p := range r.Ports {
				pr.Ports[i] = p.String()
			}
			pg.Rules = append(pg.Rules, pr)
		}
		resp.Groups = append(resp.Groups, pg)
		resp.Profiles = append(resp.Profiles, pv.Profiles[g.Name]...)
	}
	slices.Sort(resp.Profiles)
	resp.Profiles = slices.Compact(resp.Profiles)
	writeJSON(w, resp)
}
