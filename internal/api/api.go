// Package api is fqdngate's HTTP interface (DESIGN section 8): health,
// readiness, Prometheus metrics, and the ledger, events and explanations
// as JSON, a reload, and the console (/ui/). It listens on loopback by
// default; off loopback every path but the probes, the console's files
// and the feeds needs the token (security.go). Every endpoint but reload
// is read-only.
package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/monitor"
	"github.com/fqdngate/fqdngate/internal/policy"
	"github.com/fqdngate/fqdngate/internal/ui"
)

// Limits of what one request returns.
const (
	defaultLimit = 1000
	maxLimit     = 10000
)

// Deps are what the API reads.
type Deps struct {
	Ledger   *ledger.Ledger
	Monitor  *monitor.Monitor
	Registry *prometheus.Registry
	// Ready reports whether the kernel table is in place and DNS is being
	// served, and if not, why.
	Ready func() (bool, string)
	// Pprof mounts net/http/pprof under /debug/pprof/ (FQDNGATE_PPROF=1):
	// for profiling on a test machine, never on by default.
	Pprof bool
	// Reload re-reads the configuration and applies its policy; nil
	// answers 404.
	Reload func(ctx context.Context) error
	Log    *slog.Logger

	// The console's view (GET /api/v1/status, /api/v1/policy). Policy
	// is read per request, so a reload shows at once; nil shows no
	// groups.
	Mode      string
	Started   time.Time
	Upstreams []string
	Policy    func() PolicyView
	// Security guards the routes; nil adds the headers and asks for no
	// token (tests).
	Security *Security
	// Feeds, if not nil, serves /feeds/ (the firewall feeds); it
	// authenticates its requests itself, with the feeds' own tokens.
	Feeds http.Handler
	// Cluster, if not nil, is this node's view of its site, for
	// GET /api/v1/status.
	Cluster func() any
}

// Handler builds the API's routes.
func Handler(d Deps) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ok, why := d.Ready(); !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready:", why)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.Registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(d.Log.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("GET /api/v1/ledger", d.ledger)
	mux.HandleFunc("GET /api/v1/events", d.events)
	mux.HandleFunc("GET /api/v1/explain", d.explain)
	mux.HandleFunc("GET /api/v1/names", d.names)
	mux.HandleFunc("GET /api/v1/status", d.status)
	mux.HandleFunc("GET /api/v1/clients", d.clients)
	mux.HandleFunc("GET /api/v1/policy", d.policy)
	mux.Handle("GET /ui/", http.StripPrefix("/ui/", ui.Handler()))
	mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
	if d.Reload != nil {
		mux.HandleFunc("POST /api/v1/reload", d.reload)
	}
	if d.Feeds != nil {
		mux.Handle("/feeds/", d.Feeds)
	}
	if d.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	sec := d.Security
	if sec == nil {
		sec = &Security{}
	}
	return sec.Wrap(mux)
}

// LedgerEntry is one ledger entry as the API returns it.
type LedgerEntry struct {
	Client  netip.Addr `json:"client"`
	Group   string     `json:"group"`
	Node    string     `json:"node,omitempty"` // the cluster node that answered
	Name    string     `json:"name"`
	Chain   []string   `json:"chain,omitempty"`
	Addr    netip.Addr `json:"addr"`
	Rules   []string   `json:"rules"`
	Ports   []string   `json:"ports"`
	TTL     float64    `json:"ttl_seconds"`
	Learnt  time.Time  `json:"learnt"`
	Expires time.Time  `json:"expires"`
	Live    bool       `json:"live"`
}

// LedgerResponse is GET /api/v1/ledger.
type LedgerResponse struct {
	Entries []LedgerEntry `json:"entries"`
	// Truncated is true when more entries matched than limit.
	Truncated bool `json:"truncated"`
}

func (d Deps) ledger(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var f ledger.Filter
	var err error
	if f.Client, err = optAddr(q.Get("client")); err != nil {
		badRequest(w, "client", err)
		return
	}
	if f.Addr, err = optAddr(q.Get("addr")); err != nil {
		badRequest(w, "addr", err)
		return
	}
	if f.Name, err = optName(q.Get("name")); err != nil {
		badRequest(w, "name", err)
		return
	}
	limit, err := limitOf(q.Get("limit"))
	if err != nil {
		badRequest(w, "limit", err)
		return
	}
	now := time.Now()
	entries, more := d.Ledger.Select(f, limit)
	resp := LedgerResponse{Entries: make([]LedgerEntry, len(entries)), Truncated: more}
	for i, e := range entries {
		ports := make([]string, len(e.Ports))
		for j, p := range e.Ports {
			ports[j] = p.String()
		}
		resp.Entries[i] = LedgerEntry{Client: e.Client, Group: e.Group, Node: e.Node, Name: e.Name, Chain: e.Chain, Addr: e.Addr,
			Rules: e.Rules, Ports: ports, TTL: e.TTL.Seconds(), Learnt: e.Learnt.UTC(), Expires: e.Expires.UTC(), Live: e.Live(now)}
	}
	writeJSON(w, resp)
}

// EventsResponse is GET /api/v1/events.
type EventsResponse struct {
	Events []monitor.Event `json:"events"`
	// Next is the since= to ask with next time.
	Next uint64 `json:"next"`
	// Lost is true when events after since= were already overwritten.
	Lost bool `json:"lost"`
}

func (d Deps) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var since uint64
	if s := q.Get("since"); s != "" {
		var err error
		if since, err = strconv.ParseUint(s, 10, 64); err != nil {
			badRequest(w, "since", errors.New("not a sequence number"))
			return
		}
	}
	limit, err := limitOf(q.Get("limit"))
	if err != nil {
		badRequest(w, "limit", err)
		return
	}
	f := monitor.EventFilter{Kind: q.Get("kind"), Outcome: q.Get("outcome")}
	if f.Client, err = optAddr(q.Get("client")); err != nil {
		badRequest(w, "client", err)
		return
	}
	if f.Name, err = optName(q.Get("name")); err != nil {
		badRequest(w, "name", err)
		return
	}
	if f.Kind != "" && f.Kind != monitor.KindQuery && f.Kind != monitor.KindDrop {
		badRequest(w, "kind", fmt.Errorf("%q is neither %s nor %s", f.Kind, monitor.KindQuery, monitor.KindDrop))
		return
	}
	evs, next, lost := d.Monitor.Events.Select(since, limit, f)
	if evs == nil {
		evs = []monitor.Event{}
	}
	writeJSON(w, EventsResponse{Events: evs, Next: next, Lost: lost})
}

func (d Deps) explain(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	addr, err := netip.ParseAddr(q.Get("addr"))
	if err != nil {
		badRequest(w, "addr", errors.New("required: an IP address"))
		return
	}
	client, err := optAddr(q.Get("client"))
	if err != nil {
		badRequest(w, "client", err)
		return
	}
	var proto uint8
	var port uint16
	if p := q.Get("port"); p != "" {
		pr, err := policy.ParsePort(p)
		if err != nil || pr.IsRange() {
			badRequest(w, "port", fmt.Errorf("%q is not one port like tcp/443", p))
			return
		}
		proto, port = pr.Proto, pr.Lo
	}
	if proto != 0 {
		writeJSON(w, ExplainResponse{Explanation: d.Monitor.Explain(client, addr, proto, port)})
		return
	}
	ex, latest := d.Monitor.ExplainLatest(client, addr)
	writeJSON(w, ExplainResponse{Explanation: ex, LatestDrop: latest})
}

// ExplainResponse is GET /api/v1/explain: the explanation's fields and,
// asked without a port, the client's latest drop for the address.
type ExplainResponse struct {
	monitor.Explanation
	LatestDrop *monitor.LatestDrop `json:"latest_drop,omitempty"`
}

// NamesResponse is GET /api/v1/names: the names clients asked for, for
// `fqdngate suggest`.
type NamesResponse struct {
	Names []monitor.NameSeen `json:"names"`
}

func (d Deps) names(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, NamesResponse{Names: d.Monitor.Names()})
}

// ReloadResponse is POST /api/v1/reload.
type ReloadResponse struct {
	Reloaded bool   `json:"reloaded"`
	Error    string `json:"error,omitempty"`
}

func (d Deps) reload(w http.ResponseWriter, r *http.Request) {
	if err := d.Reload(r.Context()); err != nil {
		// The running configuration stays; the error says why.
		writeJSONStatus(w, http.StatusConflict, ReloadResponse{Error: err.Error()})
		return
	}
	writeJSON(w, ReloadResponse{Reloaded: true})
}

func optAddr(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	return a.Unmap(), nil
}

// optName is a name parameter, normalised; "" when absent.
func optName(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	name, ok := policy.NormalizeName(s)
	if !ok {
		return "", fmt.Errorf("%q is not a domain name", s)
	}
	return name, nil
}

func limitOf(s string) (int, error) {
	if s == "" {
		return defaultLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxLimit {
		return 0, fmt.Errorf("%q is not a number from 1 to %d", s, maxLimit)
	}
	return n, nil
}

// Error is the body of every 4xx.
type Error struct {
	Error string `json:"error"`
	Param string `json:"param,omitempty"`
}

func badRequest(w http.ResponseWriter, param string, err error) {
	writeJSONStatus(w, http.StatusBadRequest, Error{Error: err.Error(), Param: param})
}

func writeJSON(w http.ResponseWriter, v any) { writeJSONStatus(w, http.StatusOK, v) }

func writeJSONStatus(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Server serves the API on one address until Shutdown.
type Server struct {
	srv *http.Server
	ln  net.Listener
	err chan error
}

// Listen starts serving h on addr, over TLS when tlsConf is not nil.
func Listen(addr netip.AddrPort, h http.Handler, tlsConf *tls.Config) (*Server, error) {
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	s := &Server{
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10},
		ln:  ln,
		err: make(chan error, 1),
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.err <- err
		}
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Err reports a server that stopped on its own.
func (s *Server) Err() <-chan error { return s.err }

// Shutdown stops accepting and waits for requests in flight.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
