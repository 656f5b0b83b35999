package feeds

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// PullOptions configure the pull feeds.
type PullOptions struct {
	Ledger *ledger.Ledger
	// Policy returns the policy in force (it changes on reload).
	Policy func() *policy.Policy
	Tokens []Token
	// Widen writes a pattern the domain list cannot hold as the wider
	// *.zone; otherwise it is left out (and reported).
	Widen   bool
	Metrics *Metrics
	Log     *slog.Logger
	// Now is the clock; nil for time.Now.
	Now func() time.Time
}

// Pull serves the pull feeds; it is an http.Handler for /feeds/.
type Pull struct {
	o      PullOptions
	tokens tokens
	mux    *http.ServeMux
	// reported holds the patterns already logged as left out of a domain
	// list, so that a firewall polling every minute does not repeat it;
	// bounded by the policy's patterns.
	reported sync.Map
}

// NewPull builds the pull feeds' handler.
func NewPull(o PullOptions) *Pull {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
	p := &Pull{o: o, tokens: newTokens(o.Tokens), mux: http.NewServeMux()}
	p.mux.HandleFunc("GET /feeds/v1/ip", p.serve(FeedIP, p.ip))
	p.mux.HandleFunc("GET /feeds/v1/domain", p.serve(FeedDomain, p.domain))
	p.mux.HandleFunc("GET /feeds/v1/checkpoint", p.serve(FeedCheckpoint, p.checkpoint))
	return p
}

func (p *Pull) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.mux.ServeHTTP(w, r) }

// feedError is a request that cannot be answered with a feed.
type feedError struct {
	code int
	msg  string
}

// render makes a feed's body for group, with its content type and any
// headers of its own.
type render func(r *http.Request, g *policy.Group, w http.ResponseWriter) (body []byte, ctype string, ferr *feedError)

// serve authenticates, finds the group, renders and answers with an ETag.
func (p *Pull) serve(feed string, fn render) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		code := p.serveFeed(feed, fn, w, r)
		p.o.Metrics.request(feed, code)
	}
}

func (p *Pull) serveFeed(feed string, fn render, w http.ResponseWriter, r *http.Request) int {
	fail := func(code int, msg string) int {
		if code == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="fqdngate feeds", charset="UTF-8"`)
		}
		http.Error(w, msg, code)
		return code
	}
	secret, ok := secretOf(r)
	if !ok {
		return fail(http.StatusUnauthorized, "a feed token is required (HTTP Basic password or Bearer)")
	}
	tok := p.tokens.match(secret)
	if tok == nil {
		return fail(http.StatusUnauthorized, "unknown feed token")
	}
	group := r.URL.Query().Get("client")
	if group == "" {
		return fail(http.StatusBadRequest, "client= (a client group name) is required")
	}
	if !tok.allows(feed, group) {
		return fail(http.StatusForbidden, "token "+tok.Name+" may not read feed "+feed+" of client group "+group)
	}
	g := groupNamed(p.o.Policy(), group)
	if g == nil {
		return fail(http.StatusNotFound, "no client group "+group)
	}
	body, ctype, ferr := fn(r, g, w)
	if ferr != nil {
		return fail(ferr.code, ferr.msg)
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	h := w.Header()
	h.Set("ETag", etag)
	// Authenticated and changing at any time: no shared cache may keep
	// it, and every reader asks again, cheaply, with If-None-Match.
	h.Set("Cache-Control", "private, no-cache")
	if etagMatch(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return http.StatusNotModified
	}
	h.Set("Content-Type", ctype)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return http.StatusOK
}

// etagMatch is If-None-Match's weak comparison (RFC 9110 13.1.2).
func etagMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

func groupNamed(pol *policy.Policy, name string) *policy.Group {
	if pol == nil {
		return nil
	}
	for _, g := range pol.Groups() {
		if g.Name == name {
			return g
		}
	}
	return nil
}

func hasRule(g *policy.Group, name string) bool {
	return slices.ContainsFunc(g.Rules, func(r *policy.Rule) bool { return r.Name == name })
}

func (p *Pull) ip(r *http.Request, g *policy.Group, _ http.ResponseWriter) ([]byte, string, *feedError) {
	q := r.URL.Query()
	rule := q.Get("rule")
	if rule != "" && !hasRule(g, rule) {
		return nil, "", &feedError{http.StatusNotFound, "client group " + g.Name + " has no rule " + rule}
	}
	var want4, want6 bool
	switch q.Get("family") {
	case "":
		want4, want6 = true, true
	case "4":
		want4 = true
	case "6":
		want6 = true
	default:
		return nil, "", &feedError{http.StatusBadRequest, "family= is 4 or 6"}
	}
	addrs := p.liveAddrs(g.Name, func(a ledger.LiveAddr) bool {
		return (a.Addr.Is4() && want4 || a.Addr.Is6() && want6) && (rule == "" || slices.Contains(a.Rules, rule))
	})
	return ipList(addrs), "text/plain; charset=utf-8", nil
}

// liveAddrs is the sorted, distinct live addresses of group that keep
// says to keep.
func (p *Pull) liveAddrs(group string, keep func(ledger.LiveAddr) bool) []netip.Addr {
	var addrs []netip.Addr
	p.o.Ledger.WalkLive(p.o.Now(), group, func(a ledger.LiveAddr) {
		if keep(a) {
			addrs = append(addrs, a.Addr)
		}
	})
	return sortAddrs(addrs)
}

func (p *Pull) domain(_ *http.Request, g *policy.Group, w http.ResponseWriter) ([]byte, string, *feedError) {
	body, leftOut := domainList(g.Rules, p.o.Widen)
	if len(leftOut) > 0 {
		// The domain list has no comment form of its own: what it
		// cannot hold is named in a header and logged, once a pattern.
		w.Header().Set("X-Fqdngate-Left-Out", strings.Join(leftOut, " "))
		for _, pat := range leftOut {
			if _, seen := p.reported.LoadOrStore(g.Name+" "+pat, struct{}{}); !seen {
				p.o.Log.Warn("pattern left out of the domain feed: an EDL domain list cannot hold a wildcard inside a label; set feeds.widen to list it as *.zone",
					"client", g.Name, "pattern", pat)
			}
		}
	}
	return body, "text/plain; charset=utf-8", nil
}

func (p *Pull) checkpoint(_ *http.Request, g *policy.Group, _ http.ResponseWriter) ([]byte, string, *feedError) {
	byRule := make(map[string][]netip.Addr, len(g.Rules))
	p.o.Ledger.WalkLive(p.o.Now(), g.Name, func(a ledger.LiveAddr) {
		for _, r := range a.Rules {
			byRule[r] = append(byRule[r], a.Addr)
		}
	})
	rules := make([]ruleAddrs, 0, len(g.Rules))
	seen := map[string]bool{}
	for _, r := range g.Rules {
		if seen[r.Name] {
			continue
		}
		seen[r.Name] = true
		rules = append(rules, ruleAddrs{Rule: r.Name, Addrs: sortAddrs(byRule[r.Name])})
	}
	return checkpointJSON(g.Name, rules), "application/json", nil
}
