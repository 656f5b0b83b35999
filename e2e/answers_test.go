package e2e

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/lab"
)

// answersClients is the gateway's configuration for the answer tests:
// a rule with the default private_answers (withhold), one that allows
// them, one that pins its CDN, and a name with a one-second TTL for
// serve-stale. The cache is on (serve-stale needs it); staleLine is
// the serve_stale setting.
func answersClients(staleLine string) string {
	return staleLine + `upstream_timeout: 300ms
clients:
  - name: devices
    cidrs: ["192.0.2.0/24", "2001:db8:1::/64"]
    rules:
      - name: mixed
        fqdn: ["mixed.example.com"]
        ports: ["tcp/443"]
      - name: privlink
        fqdn: ["privlink.example.com"]
        ports: ["tcp/443"]
        private_answers: allow
      - name: pinned
        fqdn: ["*.pin.example.com"]
        ports: ["tcp/443"]
        cname_targets: strict
        via: ["*.edge.example"]
      - name: short
        fqdn: ["stale.example.com"]
        ports: ["tcp/443"]
`
}

// answersRecords are the fake authoritative's answers for those names.
// The private addresses are data only: nothing is sent to them.
var answersRecords = map[string][]string{
	"mixed.example.com.|A": {
		"mixed.example.com. 60 IN A 203.0.113.50",
		"mixed.example.com. 60 IN A 10.0.0.1",
		"mixed.example.com. 60 IN A 127.0.0.1",
	},
	"privlink.example.com.|A": {
		"privlink.example.com. 60 IN A 203.0.113.51",
		"privlink.example.com. 60 IN A 10.0.0.2",
		"privlink.example.com. 60 IN A 127.0.0.2",
	},
	"ok.pin.example.com.|A": {
		"ok.pin.example.com. 60 IN CNAME x.edge.example.",
		"x.edge.example. 60 IN A 203.0.113.60",
	},
	"bad.pin.example.com.|A": {
		"bad.pin.example.com. 60 IN CNAME x.edge.example.",
		"x.edge.example. 60 IN CNAME y.cdn.example.",
		"y.cdn.example. 60 IN A 203.0.113.61",
	},
	"stale.example.com.|A": {"stale.example.com. 1 IN A 203.0.113.70"},
}

func newAnswersTopo(t *testing.T, staleLine string) *topo {
	tp := newTopoClients(t, "enforce", answersClients(staleLine))
	tp.auth.mu.Lock()
	tp.auth.records = answersRecords
	tp.auth.mu.Unlock()
	return tp
}

// resolveEDNS asks the gateway from ns with EDNS, so that Extended DNS
// Errors come back, waiting up to timeout.
func resolveEDNS(t *testing.T, ns *lab.NS, name string, timeout time.Duration) *dns.Msg {
	t.Helper()
	var r *dns.Msg
	err := ns.Do(func() error {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		m.SetEdns0(1232, false)
		var err error
		r, _, err = (&dns.Client{Timeout: timeout}).Exchange(m, net.JoinHostPort(gwDevAddr4, "53"))
		return err
	})
	if err != nil {
		t.Fatalf("resolve %s: %v", name, err)
	}
	return r
}

func answerA(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

func edeOf(r *dns.Msg) (uint16, string, bool) {
	if opt := r.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				return e.InfoCode, e.ExtraText, true
			}
		}
	}
	return 0, "", false
}

// setHolds reports whether fqdngate's sets in the gateway's kernel hold
// an element for devA and addr, as `nft list` shows them.
func (tp *topo) setHolds(t *testing.T, addr string) bool {
	t.Helper()
	out, err := tp.gw.Run("nft", "list", "table", "inet", "fqdngate")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(out, devAAddr4+" . "+addr+" . ")
}

func TestPrivateAnswers(t *testing.T) {
	tp := newAnswersTopo(t, "")

	t.Run("withheld by default: not in the answer, not in the kernel", func(t *testing.T) {
		r := resolveEDNS(t, tp.devA, "mixed.example.com.", 2*time.Second)
		if got := answerA(r); r.Rcode != dns.RcodeSuccess || strings.Join(got, ",") != "203.0.113.50" {
			t.Fatalf("answer %s %v, want only 203.0.113.50", dns.RcodeToString[r.Rcode], got)
		}
		if !tp.setHolds(t, "203.0.113.50") {
			t.Error("the public address is not installed")
		}
		for _, a := range []string{"10.0.0.1", "127.0.0.1"} {
			if tp.setHolds(t, a) {
				t.Errorf("withheld %s is in the kernel set", a)
			}
		}
		c, err := connect(tp.devA, netip.MustParseAddr("203.0.113.50"), 443, 2*time.Second)
		if err != nil {
			t.Fatalf("connect to the public address: %v", err)
		}
		c.Close()
		if n := tp.metrics(t)["fqdngate_dns_private_addresses_withheld_total"]; n != 2 {
			t.Errorf("withheld counter %v, want 2", n)
		}
	})

	t.Run("private_answers allow: in the answer and in the kernel", func(t *testing.T) {
		r := resolveEDNS(t, tp.devA, "privlink.example.com.", 2*time.Second)
		got := answerA(r)
		for _, a := range []string{"203.0.113.51", "10.0.0.2", "127.0.0.2"} {
			if !strings.Contains(strings.Join(got, ","), a) {
				t.Errorf("answer %v lacks %s", got, a)
			}
			if !tp.setHolds(t, a) {
				t.Errorf("%s is not in the kernel set", a)
			}
		}
	})
}

func TestCNAMEPinning(t *testing.T) {
	tp := newAnswersTopo(t, "")

	t.Run("chain through via: answered, installed, connects", func(t *testing.T) {
		r := resolveEDNS(t, tp.devA, "ok.pin.example.com.", 2*time.Second)
		if got := answerA(r); r.Rcode != dns.RcodeSuccess || strings.Join(got, ",") != "203.0.113.60" {
			t.Fatalf("answer %s %v", dns.RcodeToString[r.Rcode], got)
		}
		c, err := connect(tp.devA, netip.MustParseAddr("203.0.113.60"), 443, 2*time.Second)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		c.Close()
	})

	t.Run("chain elsewhere: denied with EDE, nothing installed, dropped", func(t *testing.T) {
		r := resolveEDNS(t, tp.devA, "bad.pin.example.com.", 2*time.Second)
		if r.Rcode != dns.RcodeNameError || len(r.Answer) != 0 {
			t.Fatalf("reply %s with %d records, want NXDOMAIN and none", dns.RcodeToString[r.Rcode], len(r.Answer))
		}
		code, text, ok := edeOf(r)
		if !ok || code != dns.ExtendedErrorCodeBlocked || !strings.Contains(text, "y.cdn.example") {
			t.Errorf("EDE %d %q (%v), want Blocked naming y.cdn.example", code, text, ok)
		}
		if tp.setHolds(t, "203.0.113.61") {
			t.Error("the refused answer's address is in the kernel set")
		}
		if _, err := connect(tp.devA, netip.MustParseAddr("203.0.113.61"), 443, dropWait); !dropped(err) {
			t.Fatalf("connect to the refused answer's address: %v, want dropped", err)
		}
		if n := tp.metrics(t)[`fqdngate_dns_queries_total{decision="cname-not-via",group="devices"}`]; n != 1 {
			t.Errorf("cname-not-via queries %v, want 1", n)
		}
	})
}

// blockUpstream drops every DNS packet to the fake authoritative, in the
// fake internet's own namespace: no upstream answers any more.
func (tp *topo) blockUpstream(t *testing.T) {
	t.Helper()
	for _, args := range [][]string{
		{"add", "table", "inet", "blockdns"},
		{"add", "chain", "inet", "blockdns", "in", "{ type filter hook input priority 0; }"},
		{"add", "rule", "inet", "blockdns", "in", "udp", "dport", "53", "drop"},
		{"add", "rule", "inet", "blockdns", "in", "tcp", "dport", "53", "drop"},
	} {
		if out, err := tp.inet.Run("nft", args...); err != nil {
			t.Fatalf("nft %v: %v\n%s", args, err, out)
		}
	}
}

func TestServeStale(t *testing.T) {
	tp := newAnswersTopo(t, "serve_stale: 1h\n")
	addr := netip.MustParseAddr("203.0.113.70")
	if r := resolveEDNS(t, tp.devA, "stale.example.com.", 2*time.Second); r.Rcode != dns.RcodeSuccess || len(answerA(r)) != 1 {
		t.Fatalf("first answer: %v", r)
	}
	tp.blockUpstream(t)
	// The first answer's element lives 1 s TTL + 1 s grace: wait until the
	// kernel has let it go, so that only the stale answer can open it.
	deadline := time.Now().Add(10 * time.Second)
	for tp.setHolds(t, addr.String()) {
		if time.Now().After(deadline) {
			t.Fatal("the first answer's element did not expire within 10s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := connect(tp.devA, addr, 443, dropWait); !dropped(err) {
		t.Fatalf("connect after expiry: %v, want dropped", err)
	}
	r := resolveEDNS(t, tp.devA, "stale.example.com.", 5*time.Second)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 30 {
		t.Fatalf("stale reply %v, want the cached answer with TTL 30", r)
	}
	if code, _, ok := edeOf(r); !ok || code != dns.ExtendedErrorCodeStaleAnswer {
		t.Errorf("EDE %d (%v), want 3 Stale Answer", code, ok)
	}
	if !tp.setHolds(t, addr.String()) {
		t.Error("the stale answer's address is not in the kernel set")
	}
	c, err := connect(tp.devA, addr, 443, 2*time.Second)
	if err != nil {
		t.Fatalf("connect after the stale answer: %v", err)
	}
	c.Close()
	if !slices.Contains(tp.ledgerElems(t), devAAddr4+" . "+addr.String()+" . tcp . 443") {
		t.Errorf("the stale answer is not in the ledger: %v", tp.ledgerElems(t))
	}
	if n := tp.metrics(t)["fqdngate_dns_stale_answers_total"]; n != 1 {
		t.Errorf("stale answers counter %v, want 1", n)
	}
}

func TestServeStaleOff(t *testing.T) {
	tp := newAnswersTopo(t, "")
	if r := resolveEDNS(t, tp.devA, "stale.example.com.", 2*time.Second); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("first answer: %v", r)
	}
	tp.blockUpstream(t)
	// Cached answers are served until they expire (1 s); then SERVFAIL.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := resolveEDNS(t, tp.devA, "stale.example.com.", 5*time.Second)
		if code, _, ok := edeOf(r); ok && code == dns.ExtendedErrorCodeStaleAnswer {
			t.Fatalf("stale answer with serve_stale off: %v", r)
		}
		if r.Rcode == dns.RcodeServerFailure {
			return
		}
		if r.Rcode != dns.RcodeSuccess || time.Now().After(deadline) {
			t.Fatalf("reply %s, want SERVFAIL once the cached answer expired", dns.RcodeToString[r.Rcode])
		}
		time.Sleep(100 * time.Millisecond)
	}
}
