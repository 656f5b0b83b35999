package e2e

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/feeds/feedstest"
	"github.com/fqdngate/fqdngate/internal/lab"
)

// The fake firewalls' management addresses, on the fake internet.
const (
	fwAddr     = "198.51.100.2"
	panosPort  = 9443
	fortiPort  = 10443
	feedToken  = "edl-token-for-the-lab"
	panosKey   = "pan-key-for-the-lab"
	fortiKey   = "forti-key-for-the-lab"
	feedsGroup = "sphere"
)

// feedsClients puts device A alone in group sphere (rules web and short)
// and device B in group cams, with the answer cache on (cache hits must
// be pushed too) and the feeds section after it.
func feedsClients(feedsSection string) string {
	return `clients:
  - name: sphere
    cidrs: ["192.0.2.10/32", "2001:db8:1::10/128"]
    rules:
      - name: web
        fqdn: ["www.example.com"]
        ports: ["tcp/443"]
      - name: short
        fqdn: ["short.example.com"]
        ports: ["tcp/443"]
  - name: cams
    cidrs: ["192.0.2.0/24", "2001:db8:1::/64"]
    rules:
      - name: web
        fqdn: ["rot.example.com", "www.example.com"]
        ports: ["tcp/443"]
` + feedsSection
}

func writeSecret(t *testing.T, name, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(s+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// feedGet fetches a feed from the gateway's API listener, inside the
// gateway's namespace, as the firewall would (HTTP Basic, any user).
func (tp *topo) feedGet(t *testing.T, path, token, inm string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest("GET", apiBase+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.SetBasicAuth("paloalto", token)
	}
	if inm != "" {
		req.Header.Set("If-None-Match", inm)
	}
	resp, err := tp.apiClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	code, hdr := resp.StatusCode, resp.Header
	return code, string(body), hdr
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// poll waits for cond, checking every 50 ms, for at most d.
func poll(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestFeedsPullFromTheLedger(t *testing.T) {
	tok := writeSecret(t, "edl", feedToken)
	tp := newTopoClients(t, "enforce", feedsClients(fmt.Sprintf(`feeds:
  tokens:
    - {name: edl, token_file: %s, feeds: [ip, domain, checkpoint], clients: [sphere, cams]}
`, tok)))
	tp.addrsOf(t, tp.devA, "www.example.com.", dns.TypeA, gwDevAddr4)
	tp.addrsOf(t, tp.devA, "www.example.com.", dns.TypeAAAA, gwDevAddr6)
	tp.addrsOf(t, tp.devA, "short.example.com.", dns.TypeA, gwDevAddr4)
	rot := tp.addrsOf(t, tp.devB, "rot.example.com.", dns.TypeA, gwDevAddr4)

	code, body, hdr := tp.feedGet(t, "/feeds/v1/ip?client=sphere", feedToken, "")
	if code != http.StatusOK {
		t.Fatalf("ip feed: %d %s", code, body)
	}
	// Exactly device A's live addresses: not device B's (another group).
	if got, want := lines(body), []string{"2001:db8:cd::5", "203.0.113.5", "203.0.113.6"}; !slices.Equal(got, want) {
		t.Errorf("ip feed of sphere = %v, want %v", got, want)
	}
	if strings.Contains(body, rot[0].String()) {
		t.Errorf("the feed of sphere lists %s, which only device B (cams) was told", rot[0])
	}
	if _, b, _ := tp.feedGet(t, "/feeds/v1/ip?client=cams", feedToken, ""); !slices.Contains(lines(b), rot[0].String()) {
		t.Errorf("the feed of cams lacks %s: %q", rot[0], b)
	}
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/feeds/v1/ip?client=sphere&rule=web", []string{"2001:db8:cd::5", "203.0.113.5"}},
		{"/feeds/v1/ip?client=sphere&rule=web&family=4", []string{"203.0.113.5"}},
		{"/feeds/v1/ip?client=sphere&family=6", []string{"2001:db8:cd::5"}},
	} {
		if _, b, _ := tp.feedGet(t, tc.path, feedToken, ""); !slices.Equal(lines(b), tc.want) {
			t.Errorf("%s = %v, want %v", tc.path, lines(b), tc.want)
		}
	}
	// The same set: 304 to the ETag.
	if c, _, _ := tp.feedGet(t, "/feeds/v1/ip?client=sphere", feedToken, hdr.Get("ETag")); c != http.StatusNotModified {
		t.Errorf("If-None-Match with the current ETag: %d, want 304", c)
	}
	if c, _, _ := tp.feedGet(t, "/feeds/v1/ip?client=sphere", "not-the-token", ""); c != http.StatusUnauthorized {
		t.Errorf("wrong token: %d, want 401", c)
	}
	if _, b, _ := tp.feedGet(t, "/feeds/v1/domain?client=sphere", feedToken, ""); !slices.Equal(lines(b), []string{"^short.example.com", "^www.example.com"}) {
		t.Errorf("domain feed = %q", b)
	}
	if _, b, _ := tp.feedGet(t, "/feeds/v1/checkpoint?client=sphere", feedToken, ""); !strings.Contains(b, `"name": "fqdngate-sphere-short"`) || !strings.Contains(b, `"203.0.113.6"`) {
		t.Errorf("checkpoint feed = %s", b)
	}
	// short.example.com has a TTL of 1 s (min_ttl 0, grace 1 s): it
	// leaves the feed once it expires, and the ETag changes with it.
	poll(t, 10*time.Second, "203.0.113.6 leaves the feed after its expiry", func() bool {
		_, b, _ := tp.feedGet(t, "/feeds/v1/ip?client=sphere", feedToken, "")
		return !slices.Contains(lines(b), "203.0.113.6")
	})
	if c, _, _ := tp.feedGet(t, "/feeds/v1/ip?client=sphere", feedToken, hdr.Get("ETag")); c != http.StatusOK {
		t.Errorf("after an expiry the old ETag got %d, want 200", c)
	}
}

// fakeFirewall serves a fake firewall API over HTTPS at fwAddr:port in
// the fake internet, with a certificate of the lab CA for that address;
// stop closes it (the firewall is down), and start again brings it back.
type fakeFirewall struct {
	t    *testing.T
	ns   *lab.NS
	port int
	h    http.Handler
	tls  *tls.Config
	srv  *http.Server
}

func startFirewall(t *testing.T, ns *lab.NS, ca *lab.CA, port int, h http.Handler) *fakeFirewall {
	cfg, err := ca.IPServerConfig(netip.MustParseAddr(fwAddr))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeFirewall{t: t, ns: ns, port: port, h: h, tls: cfg}
	f.start()
	t.Cleanup(f.stop)
	return f
}

func (f *fakeFirewall) start() {
	var ln net.Listener
	if err := f.ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf("%s:%d", fwAddr, f.port))
		return err
	}); err != nil {
		f.t.Fatal(err)
	}
	srv := &http.Server{Handler: f.h, TLSConfig: f.tls, ReadHeaderTimeout: 5 * time.Second}
	f.srv = srv
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			f.t.Logf("fake firewall: %v", err)
		}
	}()
}

func (f *fakeFirewall) stop() {
	if f.srv != nil {
		_ = f.srv.Close()
		f.srv = nil
	}
}

// positive reports whether a metric line has a value above zero.
func positive(line string) bool {
	f := strings.Fields(line)
	return len(f) == 2 && f[1] != "0"
}

// waitPushUp waits until every target has had a request acknowledged
// (its first resync, which waits for the fake started after fqdngate).
func (tp *topo) waitPushUp(t *testing.T, targets ...string) {
	t.Helper()
	for _, target := range targets {
		poll(t, 15*time.Second, target+" answered", func() bool {
			return positive(tp.metric(t, `fqdngate_push_batches_total{result="ok",target="`+target+`"}`))
		})
	}
}

// metric reads one sample of the gateway's /metrics.
func (tp *topo) metric(t *testing.T, prefix string) string {
	t.Helper()
	var body string
	tp.apiGet(t, "/metrics", &body)
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func pushSection(t *testing.T, ca *lab.CA, panosHold bool, fortiKeyFile string) string {
	caFile := writeSecret(t, "ca.pem", string(ca.PEM()))
	return fmt.Sprintf(`feeds:
  push:
    - {type: panos, url: "https://%s:%d", key_file: %s, ca_file: %s, batch_ms: 100, hold: %v}
    - {type: fortigate, url: "https://%s:%d", key_file: %s, ca_file: %s, batch_ms: 20}
`, fwAddr, panosPort, writeSecret(t, "pan.key", panosKey), caFile, panosHold, fwAddr, fortiPort, fortiKeyFile, caFile)
}

func TestFeedsPushToPanosAndFortigate(t *testing.T) {
	ca, err := lab.NewCA("fqdngate lab firewalls")
	if err != nil {
		t.Fatal(err)
	}
	pan := feedstest.NewPANOS(panosKey)
	forti := feedstest.NewFortiGate(fortiKey, "fqdngate-sphere-web", "fqdngate-sphere-short", "fqdngate-cams-web")
	tp := newTopoClients(t, "enforce", feedsClients(pushSection(t, ca, false, writeSecret(t, "forti.key", fortiKey))))
	panFW := startFirewall(t, tp.inet, ca, panosPort, pan)
	startFirewall(t, tp.inet, ca, fortiPort, forti)

	www4 := netip.MustParseAddr("203.0.113.5")
	tp.waitPushUp(t, "panos-0", "fortigate-1")
	tp.addrsOf(t, tp.devA, "www.example.com.", dns.TypeA, gwDevAddr4)
	// Within a second of the answer both firewalls hold it, under the
	// group's and rule's tag, PAN-OS with the remaining lifetime (TTL 20
	// s + grace 1 s) as its timeout.
	poll(t, time.Second, "PAN-OS and FortiGate hold 203.0.113.5 within 1 s of the answer", func() bool {
		_, p := pan.Lookup("fqdngate-sphere-web", www4)
		_, f := forti.Lookup("fqdngate-sphere-web", www4)
		return p && f
	})
	if r, _ := pan.Lookup("fqdngate-sphere-web", www4); r.Timeout < 19 || r.Timeout > 21 {
		t.Errorf("PAN-OS timeout %d s, want the remaining lifetime, 19..21", r.Timeout)
	}
	if _, other := pan.Lookup("fqdngate-cams-web", www4); other {
		t.Error("device A's answer registered under group cams")
	}
	// A cache hit is pushed again (the timeout is renewed).
	first, _ := pan.Lookup("fqdngate-sphere-web", www4)
	tp.addrsOf(t, tp.devA, "www.example.com.", dns.TypeA, gwDevAddr4)
	poll(t, time.Second, "the cached answer registered again", func() bool {
		r, _ := pan.Lookup("fqdngate-sphere-web", www4)
		return r.At.After(first.At)
	})

	// The firewall goes down and comes back having forgotten everything:
	// what was answered meanwhile, and before, is sent again.
	downs := tp.metric(t, `fqdngate_push_errors_total{kind="network",target="panos-0"}`)
	panFW.stop()
	pan.Clear()
	tp.addrsOf(t, tp.devA, "short.example.com.", dns.TypeA, gwDevAddr4)
	poll(t, 5*time.Second, "the push noticed the firewall down", func() bool {
		return tp.metric(t, `fqdngate_push_errors_total{kind="network",target="panos-0"}`) != downs
	})
	panFW.start()
	poll(t, 15*time.Second, "a full resync after the firewall came back", func() bool {
		_, w := pan.Lookup("fqdngate-sphere-web", www4)
		return w
	})
	if c := tp.metric(t, `fqdngate_push_lag_seconds_count{target="fortigate-1"}`); !positive(c) {
		t.Errorf("no push lag observed: %q", c)
	}
}

func TestFeedsPushHoldAndWrongKey(t *testing.T) {
	ca, err := lab.NewCA("fqdngate lab firewalls")
	if err != nil {
		t.Fatal(err)
	}
	pan := feedstest.NewPANOS(panosKey)
	forti := feedstest.NewFortiGate(fortiKey, "fqdngate-sphere-web", "fqdngate-sphere-short", "fqdngate-cams-web")
	// The FortiGate gets a wrong key.
	tp := newTopoClients(t, "enforce", feedsClients(pushSection(t, ca, true, writeSecret(t, "forti.key", "not-"+fortiKey))))
	startFirewall(t, tp.inet, ca, panosPort, pan)
	startFirewall(t, tp.inet, ca, fortiPort, forti)
	www4 := netip.MustParseAddr("203.0.113.5")

	// hold: true: the answer is released only once PAN-OS holds it.
	poll(t, 15*time.Second, "an answer while PAN-OS answers", func() bool {
		r, err := tp.resolve(tp.devA, "www.example.com.", dns.TypeA, gwDevAddr4)
		return err == nil && r.Rcode == dns.RcodeSuccess
	})
	if _, ok := pan.Lookup("fqdngate-sphere-web", www4); !ok {
		t.Fatal("the answer was released before PAN-OS acknowledged it")
	}
	// A firewall that hangs: SERVFAIL within enforcer.hold (2 s), no
	// address released.
	pan.Hang()
	t.Cleanup(pan.Release)
	var r *dns.Msg
	err = tp.devA.Do(func() error {
		m := new(dns.Msg)
		m.SetQuestion("short.example.com.", dns.TypeA)
		var err error
		r, _, err = (&dns.Client{Timeout: 6 * time.Second}).Exchange(m, net.JoinHostPort(gwDevAddr4, "53"))
		return err
	})
	if err != nil {
		t.Fatalf("hung firewall: %v, want SERVFAIL before the client gives up", err)
	}
	if r.Rcode != dns.RcodeServerFailure || len(r.Answer) != 0 {
		t.Errorf("hung firewall: %s with %d answers, want SERVFAIL and none", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	pan.Release()

	// The wrong key: reported with the firewall's word, counted, and not
	// retried at the rate of answers.
	poll(t, 5*time.Second, "the refused key logged", func() bool {
		return strings.Contains(tp.stderr.String(), "firewall refused the API key") && strings.Contains(tp.stderr.String(), "HTTP 401")
	})
	before := forti.Requests()
	for range 5 {
		tp.resolve(tp.devA, "www.example.com.", dns.TypeA, gwDevAddr4)
	}
	if got := tp.metric(t, `fqdngate_push_errors_total{kind="auth",target="fortigate-1"}`); !strings.HasSuffix(got, " 1") {
		t.Errorf("auth errors: %q, want 1", got)
	}
	if n := forti.Requests(); n != before || n != 1 {
		t.Errorf("%d requests to the FortiGate with a refused key (%d before the answers), want 1", n, before)
	}
}
