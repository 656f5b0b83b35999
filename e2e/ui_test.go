package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/api"
	"github.com/fqdngate/fqdngate/internal/lab"
	"github.com/fqdngate/fqdngate/internal/lab/labtest"
)

// The console test's gateway serves its API on the device-side address,
// off loopback, so that every path but the probes needs the token.
const (
	uiAPI      = gwDevAddr4 + ":9053"
	uiBase     = "http://" + uiAPI
	uiToken    = "console-test-token-4b1d9e"
	scriptName = "<b>bold</b><script>pwned=1</script>.example.com."
)

// uiClients: the default group with a catalog profile, for the policy
// page's sources, and the token file.
func uiClients(tokenFile string) string {
	return fmt.Sprintf(`cache_size: 0
api:
  token_file: %s
clients:
  - name: devices
    cidrs: ["192.0.2.0/24", "2001:db8:1::/64"]
    profiles: [azure-sphere-ntp]
    rules:
      - name: web
        fqdn: ["www.example.com", "rot.example.com", "short.example.com"]
        ports: ["tcp/443"]
`, tokenFile)
}

// newBrowser starts headless Chromium inside ns, so that the page reaches
// the API where it listens and nothing the browser sends can leave the
// lab. chromedp talks to it over the DevTools pipe (file descriptors 3
// and 4), which `ip netns exec` passes through; no debugging port is
// opened anywhere.
func newBrowser(t *testing.T, ns *lab.NS) context.Context {
	t.Helper()
	labtest.Require(t, "chromium", "ip")
	chromium, _ := exec.LookPath("chromium")
	ip, _ := exec.LookPath("ip")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // root in CI
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-proxy-server", true),
		// No name is ever resolved: the console is addressed by IP.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE "+gwDevAddr4),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			cmd.Args = append([]string{ip, "netns", "exec", ns.Name, cmd.Path}, cmd.Args[1:]...)
			cmd.Path = ip
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		}),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// run runs chromedp actions with a deadline.
func run(t *testing.T, ctx context.Context, d time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("browser: %s: %v", js, err)
	}
	return v
}

// text is an element's text as the user sees it, "" if it is not there.
func text(t *testing.T, ctx context.Context, js string) string {
	t.Helper()
	return eval[string](t, ctx, `(() => { const e = `+js+`; return e ? e.textContent : ""; })()`)
}

// waitText polls until the element's text satisfies ok or the deadline
// passes, and returns the last text.
func waitText(t *testing.T, ctx context.Context, js string, within time.Duration, ok func(string) bool) (string, bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		s := text(t, ctx, js)
		if ok(s) {
			return s, true
		}
		if time.Now().After(deadline) {
			return s, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// shoot writes a screenshot of the page as name.png into dir.
func shoot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", p)
}

func contains(sub string) func(string) bool {
	return func(s string) bool { return strings.Contains(s, sub) }
}

// TestUIConsole drives the console in headless Chromium against a gateway
// whose API is off loopback, with devices generating traffic: the token
// is asked for and kept; the overview counts the clients and the queries;
// a drop shows on the drops page within 2 s with its reason, name and
// chain; the explain box answers for a dark address; a name carrying
// markup is shown as text and runs nothing; the page survives a restart.
// Screenshots of every page go to the test's artifact directory
// (go test -artifacts keeps them).
func TestUIConsole(t *testing.T) {
	labtest.Require(t, "ip", "nft", "sysctl", "chromium")
	shots := t.ArtifactDir()
	if d := os.Getenv("FQDNGATE_UI_SHOTS"); d != "" {
		shots = d
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tokenFile := filepath.Join(t.TempDir(), "api-token")
	if err := os.WriteFile(tokenFile, []byte(uiToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// listen.api goes into the listen section after dns.
	listen := fmt.Sprintf(`["%s:53", "[%s]:53"]
  api: %s`, gwDevAddr4, gwDevAddr6, uiAPI)
	tp := newTopoListen(t, "enforce", uiClients(tokenFile), listen)

	// Without the token the API answers 401 with a JSON error and a
	// Bearer challenge; the probes stay open.
	hc := tp.apiClient()
	for _, p := range []string{"/api/v1/status", "/api/v1/ledger", "/metrics"} {
		res, err := hc.Get(uiBase + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var e api.Error
		if res.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") ||
			json.Unmarshal(body, &e) != nil || e.Error == "" {
			t.Errorf("GET %s without token: %s %q %s", p, res.Status, res.Header.Get("WWW-Authenticate"), body)
		}
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		res, err := hc.Get(uiBase + p)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s without token: %s", p, res.Status)
		}
	}

	ctx := newBrowser(t, tp.gw)

	// The page says that it needs the token, and why.
	run(t, ctx, 20*time.Second, chromedp.Navigate(uiBase+"/ui/"), chromedp.WaitVisible(chromedp.ID("login")))
	if s := text(t, ctx, `document.getElementById("login-why")`); !strings.Contains(s, "401") {
		t.Errorf("login says %q, want the 401", s)
	}
	if s := text(t, ctx, `document.getElementById("conn")`); !strings.Contains(s, "token required") {
		t.Errorf("connection indicator says %q", s)
	}
	shoot(t, ctx, shots, "token")
	run(t, ctx, 10*time.Second,
		chromedp.SendKeys(chromedp.ID("token-input"), uiToken),
		chromedp.Click(chromedp.CSS("#login-form button")),
		chromedp.WaitVisible(chromedp.ID("queries-total")))
	if s := text(t, ctx, `document.getElementById("token-note")`); !strings.Contains(s, "sessionStorage") {
		t.Errorf("token note %q", s)
	}

	// Devices talk: both ask for allowed names, A also for a denied one.
	for _, ns := range []*lab.NS{tp.devA, tp.devB} {
		tp.addrsOf(t, ns, "www.example.com.", dns.TypeA, gwDevAddr4)
	}
	if r, err := tp.resolve(tp.devA, scriptName, dns.TypeA, gwDevAddr4); err != nil || r.Rcode != dns.RcodeNameError {
		t.Fatalf("%s: %v %v", scriptName, r, err)
	}
	if s, ok := waitText(t, ctx, `document.getElementById("clients-total")`, 5*time.Second, func(s string) bool { return s == "2" }); !ok {
		t.Errorf("overview shows %q clients, want 2", s)
	}
	if s := text(t, ctx, `document.querySelector("#groups tbody tr")`); !strings.Contains(s, "devices") || !strings.Contains(s, "2") {
		t.Errorf("clients by group: %q", s)
	}
	q0, _ := waitText(t, ctx, `document.getElementById("queries-total")`, 5*time.Second, func(s string) bool { _, err := strconv.Atoi(s); return err == nil })
	n0, _ := strconv.Atoi(q0)
	for range 5 {
		tp.addrsOf(t, tp.devB, "short.example.com.", dns.TypeA, gwDevAddr4)
	}
	if s, ok := waitText(t, ctx, `document.getElementById("queries-total")`, 5*time.Second, func(s string) bool {
		n, err := strconv.Atoi(s)
		return err == nil && n >= n0+5
	}); !ok {
		t.Errorf("query counter %q, want at least %d", s, n0+5)
	}
	if s := text(t, ctx, `document.getElementById("upstreams")`); !strings.Contains(s, upstreamAddr+":53") || !strings.Contains(s, "healthy") {
		t.Errorf("upstreams: %q", s)
	}
	// Traffic for the chart until it has 20 samples: queries from both
	// devices, and drops to a dark address from A.
	for i := 0; eval[int](t, ctx, `state.history.length`) < 20; i++ {
		tp.addrsOf(t, tp.devB, "short.example.com.", dns.TypeA, gwDevAddr4)
		tp.addrsOf(t, tp.devA, "www.example.com.", dns.TypeA, gwDevAddr4)
		if i%3 == 0 {
			if c, err := connect(tp.devA, netip.MustParseAddr("203.0.113.201"), 443, 200*time.Millisecond); err == nil {
				c.Close()
				t.Fatal("a dark address is reachable")
			}
		} else {
			time.Sleep(200 * time.Millisecond) // pacing the traffic, not waiting for a state
		}
	}
	if s := text(t, ctx, `document.getElementById("legend")`); !strings.Contains(s, "drops never-resolved") {
		t.Errorf("legend %q", s)
	}
	shoot(t, ctx, shots, "overview")

	// Drops page: a device's drop shows within 2 s, with reason, name
	// and chain.
	run(t, ctx, 10*time.Second, chromedp.Navigate(uiBase+"/ui/#/drops"), chromedp.WaitVisible(chromedp.ID("drops")))
	rot := tp.addrsOf(t, tp.devA, "rot.example.com.", dns.TypeA, gwDevAddr4)[0]
	sent := time.Now()
	if c, err := connect(tp.devA, rot, 8443, 300*time.Millisecond); err == nil {
		c.Close()
		t.Fatalf("%s:8443 reachable; the port is not allowed", rot)
	}
	row := `[...document.querySelectorAll("#drops-body tr")].find(r => r.textContent.includes("` + rot.String() + ` tcp/8443"))`
	s, ok := waitText(t, ctx, row, 2*time.Second-time.Since(sent), func(s string) bool { return s != "" })
	if !ok {
		t.Fatalf("drop to %s:8443 not on the drops page within 2 s", rot)
	}
	t.Logf("the drop was on the drops page %s after the first SYN", time.Since(sent).Round(10*time.Millisecond))
	for _, want := range []string{devAAddr4, "port", "rot.example.com → rot.edge.example.net → a1.cdn.example.org", "not on tcp/8443"} {
		if !strings.Contains(s, want) {
			t.Errorf("drop row %q lacks %q", s, want)
		}
	}
	// The filters: another reason hides it, the client shows it.
	run(t, ctx, 5*time.Second, chromedp.SetValue(chromedp.ID("f-reason"), "expired"))
	eval[bool](t, ctx, `document.getElementById("f-reason").dispatchEvent(new Event("input"))`)
	if s, ok := waitText(t, ctx, `document.getElementById("drops-note")`, 3*time.Second, contains("No drops match")); !ok {
		t.Errorf("reason filter expired: %q", s)
	}
	run(t, ctx, 5*time.Second, chromedp.SetValue(chromedp.ID("f-reason"), "port"), chromedp.SendKeys(chromedp.ID("f-client"), devAAddr4))
	eval[bool](t, ctx, `document.getElementById("f-reason").dispatchEvent(new Event("input"))`)
	if _, ok := waitText(t, ctx, row, 3*time.Second, func(s string) bool { return s != "" }); !ok {
		t.Error("filtered by reason port and client A, the drop is not shown")
	}
	shoot(t, ctx, shots, "drops")

	// The explain box, in the header, for a dark address.
	dark := netip.MustParseAddr("203.0.113.200")
	run(t, ctx, 10*time.Second,
		chromedp.SendKeys(chromedp.ID("ask-q"), "why can't "+devAAddr4+" reach "+dark.String()+":443?"),
		chromedp.Click(chromedp.CSS("#ask button")))
	if s, ok := waitText(t, ctx, `document.getElementById("explain-sentence")`, 5*time.Second, contains("never got")); !ok {
		t.Errorf("explain answered %q", s)
	} else if !strings.HasPrefix(s, devAAddr4+" never got "+dark.String()+" from fqdngate") {
		t.Errorf("explain sentence %q", s)
	}
	if s := text(t, ctx, `document.getElementById("explain-answer")`); !strings.Contains(s, "never-resolved") {
		t.Errorf("explain reason: %q", s)
	}
	shoot(t, ctx, shots, "explain-dark")
	// And for the port drop: the sentence and the chain.
	run(t, ctx, 10*time.Second, chromedp.Navigate(uiBase+"/ui/#/explain?q="+url.QueryEscape("why can't "+devAAddr4+" reach "+rot.String()+":8443?")))
	if s, ok := waitText(t, ctx, `document.getElementById("explain-chain")`, 5*time.Second, contains("a1.cdn.example.org")); !ok {
		t.Errorf("explain chain %q", s)
	}
	if s := text(t, ctx, `document.getElementById("explain-sentence")`); !strings.Contains(s, "not on tcp/8443") {
		t.Errorf("explain sentence for the port: %q", s)
	}
	shoot(t, ctx, shots, "explain")

	// The client page: names with decisions, the markup name as text.
	run(t, ctx, 10*time.Second, chromedp.Navigate(uiBase+"/ui/#/client/"+devAAddr4), chromedp.WaitVisible(chromedp.ID("client-addr")))
	shown := strings.TrimSuffix(scriptName, ".")
	if s, ok := waitText(t, ctx, `document.getElementById("names")`, 5*time.Second, contains(shown)); !ok {
		t.Errorf("names asked %q lack %q as text", s, shown)
	}
	tags := eval[int](t, ctx, `document.querySelectorAll("#view script, #view b").length`)
	pwned := eval[bool](t, ctx, `window.pwned === 1`)
	if tags != 0 || pwned {
		t.Errorf("the name became markup: %d elements, script ran: %v", tags, pwned)
	}
	if s := text(t, ctx, `document.getElementById("open")`); !strings.Contains(s, "www.example.com") || !strings.Contains(s, "tcp/443") {
		t.Errorf("addresses open now: %q", s)
	}
	if s := text(t, ctx, `document.getElementById("client-drops")`); !strings.Contains(s, "not on tcp/8443") {
		t.Errorf("client's recent drops: %q", s)
	}
	shoot(t, ctx, shots, "client")

	// The policy: rules and their sources, the profiles in use.
	run(t, ctx, 10*time.Second, chromedp.Navigate(uiBase+"/ui/#/policy"), chromedp.WaitVisible(chromedp.ID("profiles")))
	if s, ok := waitText(t, ctx, `document.getElementById("view")`, 5*time.Second, contains("seed")); !ok || !strings.Contains(s, "config") || !strings.Contains(s, "azure-sphere-ntp") {
		t.Errorf("policy page: %q", s)
	}
	shoot(t, ctx, shots, "policy")

	// A restart: the page says it lost the daemon, then that it is back.
	run(t, ctx, 10*time.Second, chromedp.Navigate(uiBase+"/ui/#/"), chromedp.WaitVisible(chromedp.ID("queries-total")))
	// A SIGHUP while the page polls: the policy and the token are read
	// again, and the page goes on.
	_ = tp.proc.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(tp.stderr.String(), "msg=reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload after SIGHUP:\n%s", tp.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s, ok := waitText(t, ctx, `document.getElementById("conn")`, 3*time.Second, func(s string) bool { return s == "live" }); !ok {
		t.Errorf("after SIGHUP the indicator says %q", s)
	}
	first := tp.stderr
	_ = tp.proc.Process.Signal(syscall.SIGTERM)
	<-tp.exited
	if strings.Contains(first.String(), "DATA RACE") {
		t.Errorf("fqdngate raced:\n%s", first.String())
	}
	if s, ok := waitText(t, ctx, `document.getElementById("conn")`, 5*time.Second, contains("disconnected")); !ok {
		t.Errorf("while fqdngate is down the page says %q", s)
	}
	shoot(t, ctx, shots, "disconnected")
	tp.launch()
	if s, ok := waitText(t, ctx, `document.getElementById("banner")`, 10*time.Second, contains("restarted")); !ok {
		t.Errorf("after the restart the banner says %q", s)
	}
	if s := text(t, ctx, `document.getElementById("conn")`); s != "live" {
		t.Errorf("after the restart the indicator says %q", s)
	}
	if eval[bool](t, ctx, `window.pwned === 1`) {
		t.Error("a script from a name ran")
	}
	if strings.Contains(tp.stderr.String(), "DATA RACE") {
		t.Errorf("fqdngate raced:\n%s", tp.stderr.String())
	}
}

// TestFqdnlabUpConsole: `fqdnlab up` prints the console's URL, and a
// browser on the host reaches the console and its API there, although
// the gateway's API listens on loopback inside its namespace.
func TestFqdnlabUpConsole(t *testing.T) {
	labtest.Require(t, "ip", "nft", "sysctl")
	t.Cleanup(func() { _, _ = lab.Sweep(lab.LabPrefix) })
	cmd := exec.Command(labBinary, "up", "--ttl", "4s")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lab.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		_ = cmd.Wait()
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); !sent && len(f) >= 2 && f[0] == "console" {
				found <- f[1]
				sent = true
			}
		}
		if !sent {
			close(found)
		}
	}()
	var consoleURL string
	select {
	case u, ok := <-found:
		if !ok {
			t.Fatalf("fqdnlab up printed no console line:\n%s", stderr.String())
		}
		consoleURL = u
	case <-time.After(60 * time.Second):
		t.Fatalf("fqdnlab up: no console line after 60s:\n%s", stderr.String())
	}
	if !strings.HasPrefix(consoleURL, "http://127.0.0.1:") || !strings.HasSuffix(consoleURL, "/ui/") {
		t.Fatalf("console URL %q", consoleURL)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	res, err := hc.Get(consoleURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(page), "<title>fqdngate console</title>") {
		t.Fatalf("GET %s: %s %q", consoleURL, res.Status, page)
	}
	res, err = hc.Get(strings.TrimSuffix(consoleURL, "/ui/") + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var st api.StatusResponse
	err = json.NewDecoder(res.Body).Decode(&st)
	res.Body.Close()
	if err != nil || st.Mode != "enforce" || len(st.Groups) != 1 || st.Groups[0].Name != "sphere-devices" {
		t.Fatalf("status through the console URL: %+v %v", st, err)
	}
}
