package feeds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/enforce"
	"github.com/fqdngate/fqdngate/internal/feeds/feedstest"
	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/policy"
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestPanosRegisterBody(t *testing.T) {
	now := t0
	got := string(panosRegister([]pushEntry{
		{Tag: "fqdngate-sphere-hub", Addr: addr("203.0.113.20"), Expires: now.Add(90*time.Second + time.Millisecond)},
		{Tag: "fqdngate-sphere-bus", Addr: addr("203.0.113.20"), Expires: now.Add(time.Minute)},
		{Tag: "fqdngate-sphere-hub", Addr: addr("2001:db8::20"), Expires: now.Add(-time.Second)},
		{Tag: "fqdngate-sphere-hub", Addr: addr("198.51.100.7"), Expires: now.Add(90 * 24 * time.Hour)},
	}, now))
	// The documented shape, with timeouts rounded up, at least 1 (0 is
	// "never") and at most 2592000.
	want := `<uid-message><type>update</type><payload><register>` +
		`<entry ip="198.51.100.7"><tag><member timeout="2592000">fqdngate-sphere-hub</member></tag></entry>` +
		`<entry ip="203.0.113.20"><tag><member timeout="60">fqdngate-sphere-bus</member><member timeout="91">fqdngate-sphere-hub</member></tag></entry>` +
		`<entry ip="2001:db8::20"><tag><member timeout="1">fqdngate-sphere-hub</member></tag></entry>` +
		`</register></payload></uid-message>`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestFortiBody(t *testing.T) {
	req := fortiCommands("snapshot", []pushEntry{
		{Tag: "fqdngate-sphere-hub", Addr: addr("203.0.113.20")},
		{Tag: "fqdngate-sphere-hub", Addr: addr("198.51.100.7")},
	}, []string{"fqdngate-sphere-bus", "fqdngate-sphere-hub"})
	got, _ := json.Marshal(req)
	want := `{"commands":[{"name":"fqdngate-sphere-bus","command":"snapshot","entries":[]},` +
		`{"name":"fqdngate-sphere-hub","command":"snapshot","entries":["198.51.100.7","203.0.113.20"]}]}`
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestParsePanos(t *testing.T) {
	tests := []struct {
		name   string
		code   int
		body   string
		kind   failKind
		msg    string
		failed []string
	}{
		{"success", 200, `<response status="success"><result><uid-response><version>2.0</version><payload><register></register></payload></uid-response></result></response>`, ok, "", nil},
		{"already there is no failure", 200, `<response status="error"><msg><line><uid-response><version>2.0</version><payload><register><entry ip="203.0.113.20" message="fqdngate-sphere-hub already exists, ignore"/></register></payload></uid-response></line></msg></response>`, ok, "", nil},
		{"per-entry error", 200, `<response status="error"><msg><line><uid-response><version>2.0</version><payload><register><entry ip="203.0.113.20" message="invalid ip address"/></register></payload></uid-response></line></msg></response>`, ok, "", []string{"203.0.113.20"}},
		{"403 invalid credential", 403, `<response status = 'error' code = '403'><result><msg>Invalid Credential</msg></result></response>`, failAuth, "Invalid Credential", nil},
		{"403 in the body only", 200, `<response status="error" code="403"><result><msg>Invalid Credential</msg></result></response>`, failAuth, "Invalid Credential", nil},
		{"error line", 200, `<response status="error"><msg><line>User-ID is not enabled</line></msg></response>`, failHTTP, "User-ID is not enabled", nil},
		{"5xx", 503, `busy`, failTransient, "HTTP 503", nil},
		{"not XML", 200, `<html>captive portal`, failHTTP, "not PAN-OS XML", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := parsePanos(tc.code, []byte(tc.body))
			if r.kind != tc.kind || !strings.Contains(r.msg, tc.msg) || len(r.failed) != len(tc.failed) {
				t.Fatalf("got %+v, want kind %d msg %q failed %v", r, tc.kind, tc.msg, tc.failed)
			}
			for _, a := range tc.failed {
				if _, bad := r.failed[addr(a)]; !bad {
					t.Errorf("%s not among the failed %v", a, r.failed)
				}
			}
		})
	}
}

func TestParseFortigate(t *testing.T) {
	tests := []struct {
		name   string
		code   int
		body   string
		kind   failKind
		failed int
	}{
		{"success", 200, `{"http_method":"POST","results":[],"vdom":"root","path":"system","name":"external-resource","action":"dynamic","status":"success","http_status":200}`, ok, 0},
		{"per-entry error", 200, `{"status":"error","http_status":200,"results":[{"name":"f","status":"error","message":"invalid entry","entries":["203.0.113.20"]}]}`, ok, 1},
		{"unknown feed", 200, `{"status":"error","http_status":200,"results":[{"name":"nope","status":"error","message":"threat feed not found"}]}`, ok, 0},
		{"401", 401, `{"status":"error","http_status":401}`, failAuth, 0},
		{"403", 403, ``, failAuth, 0},
		{"400", 400, `{"status":"error","http_status":400,"error":-5}`, failHTTP, 0},
		{"5xx", 502, ``, failTransient, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := parseFortigate(tc.code, []byte(tc.body))
			if r.kind != tc.kind || len(r.failed) != tc.failed {
				t.Fatalf("got %+v, want kind %d, %d failed", r, tc.kind, tc.failed)
			}
		})
	}
}

// pushLab is a pusher against a fake firewall over TLS.
type pushLab struct {
	srv  *httptest.Server
	p    *Pusher
	led  *ledger.Ledger
	stop context.CancelFunc
	done chan struct{}
}

func newPushLab(t *testing.T, typ string, h http.Handler, key string, hold bool, tweak func(*PushOptions)) *pushLab {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	pool := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	pol := testPolicy(t)
	led := ledger.New(ledger.Options{})
	o := PushOptions{Type: typ, URL: srv.URL, Key: key, RootCAs: pool, Tag: "fqdngate-{client}-{rule}", Hold: hold,
		BatchWait: 5 * time.Millisecond, BatchMax: 100, Label: typ + "-0", Ledger: led,
		Policy: func() *policy.Policy { return pol }, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, AuthPause: time.Hour}
	if tweak != nil {
		tweak(&o)
	}
	p, err := NewPusher(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &pushLab{srv: srv, p: p, led: led, stop: cancel, done: make(chan struct{})}
	go func() { defer close(l.done); p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-l.done })
	return l
}

func answerOf(group, rule string, ttl time.Duration, addrs ...string) *ledger.Answer {
	a := &ledger.Answer{Client: addr("192.0.2.10"), Group: group, Name: "contoso-hub.azure-devices.net", Rules: []string{rule},
		Ports: []policy.PortRange{{Proto: policy.ProtoTCP, Lo: 443, Hi: 443}}, TTL: ttl, Expires: time.Now().Add(ttl)}
	for _, s := range addrs {
		a.Addrs = append(a.Addrs, addr(s))
	}
	return a
}

// eventually polls cond until it holds or 5 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPushPanosRegisters(t *testing.T) {
	fw := feedstest.NewPANOS("k")
	l := newPushLab(t, "panos", fw, "k", false, nil)
	eventually(t, "the first resync", func() bool { return l.p.Stats().Resyncs.Load() == 1 })
	l.p.Offer(answerOf("sphere", "hub", 5*time.Minute, "203.0.113.20", "2001:db8::20"))
	eventually(t, "the registrations", func() bool {
		_, ok4 := fw.Lookup("fqdngate-sphere-hub", addr("203.0.113.20"))
		_, ok6 := fw.Lookup("fqdngate-sphere-hub", addr("2001:db8::20"))
		return ok4 && ok6
	})
	r, _ := fw.Lookup("fqdngate-sphere-hub", addr("203.0.113.20"))
	if r.Timeout < 295 || r.Timeout > 300 {
		t.Errorf("timeout %d s, want the remaining lifetime, about 300", r.Timeout)
	}
}

func TestPushFortigateAdds(t *testing.T) {
	fw := feedstest.NewFortiGate("k", "fqdngate-sphere-hub", "fqdngate-sphere-bus", "fqdngate-cams-hub")
	l := newPushLab(t, "fortigate", fw, "k", false, nil)
	eventually(t, "the first snapshot", func() bool { return fw.Snapshots() == 3 })
	l.p.Offer(answerOf("sphere", "bus", time.Minute, "198.51.100.7"))
	eventually(t, "the add", func() bool { _, ok := fw.Lookup("fqdngate-sphere-bus", addr("198.51.100.7")); return ok })
}

func TestPushPerEntryErrorIsCounted(t *testing.T) {
	fw := feedstest.NewPANOS("k")
	fw.Refuse(addr("203.0.113.99"), "invalid ip address")
	l := newPushLab(t, "panos", fw, "k", true, nil)
	bad, err := l.p.OfferHold(answerOf("sphere", "hub", time.Minute, "203.0.113.99"))
	if err != nil {
		t.Fatal(err)
	}
	good, _ := l.p.OfferHold(answerOf("sphere", "hub", time.Minute, "203.0.113.20"))
	if err := <-bad; !errors.Is(err, ErrPushRefused) || !strings.Contains(err.Error(), "invalid ip address") {
		t.Errorf("refused entry: %v, want ErrPushRefused with the firewall's message", err)
	}
	if err := <-good; err != nil {
		t.Errorf("the other entry: %v", err)
	}
	if l.p.Stats().EntryErrors.Load() == 0 {
		t.Error("entry error not counted")
	}
}

func TestPushWrongKeyIsNotRetriedForever(t *testing.T) {
	fw := feedstest.NewPANOS("right")
	l := newPushLab(t, "panos", fw, "wrong", true, nil)
	eventually(t, "the refusal", func() bool { return l.p.Stats().AuthFailures.Load() == 1 })
	// Answers keep coming for ten backoff periods (the test's
	// MinBackoff is 10 ms): none of them makes another request.
	for start := time.Now(); time.Since(start) < 100*time.Millisecond; {
		ch, err := l.p.OfferHold(answerOf("sphere", "hub", time.Minute, "203.0.113.20"))
		if err != nil {
			t.Fatal(err)
		}
		if err := <-ch; !errors.Is(err, ErrPushRefused) {
			t.Fatalf("held answer: %v, want ErrPushRefused at once", err)
		}
	}
	if n := fw.Requests(); n != 1 {
		t.Errorf("%d requests with a refused key, want 1 (paused)", n)
	}
}

func TestPushResyncAfterOutage(t *testing.T) {
	fw := feedstest.NewPANOS("k")
	var down atomic.Bool
	gate := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		fw.ServeHTTP(w, r)
	})
	l := newPushLab(t, "panos", gate, "k", false, nil)
	eventually(t, "the first resync", func() bool { return l.p.Stats().Resyncs.Load() == 1 })
	// While the firewall is down, answers are recorded (they are in the
	// ledger) and offered; the firewall reboots and forgets everything.
	down.Store(true)
	fw.Clear()
	for i, s := range []string{"203.0.113.20", "203.0.113.21"} {
		a := answerOf("sphere", "hub", time.Minute, s)
		l.led.Record(time.Now(), *a)
		l.p.Offer(a)
		if i == 0 {
			eventually(t, "the failure", func() bool { return l.p.Stats().Transient.Load() > 0 })
		}
	}
	down.Store(false)
	eventually(t, "the resync", func() bool { return l.p.Stats().Resyncs.Load() >= 2 })
	for _, s := range []string{"203.0.113.20", "203.0.113.21"} {
		if r, ok := fw.Lookup("fqdngate-sphere-hub", addr(s)); !ok || r.Timeout < 50 || r.Timeout > 60 {
			t.Errorf("%s after the outage: %+v %v, want registered with its remaining timeout", s, r, ok)
		}
	}
}

func TestHoldWaitsForTheFirewall(t *testing.T) {
	fw := feedstest.NewPANOS("k")
	l := newPushLab(t, "panos", fw, "k", true, nil)
	eventually(t, "the first resync", func() bool { return l.p.Stats().Resyncs.Load() == 1 })
	h := NewHold(enforce.None{}, []*Pusher{l.p}, 300*time.Millisecond)
	a := answerOf("sphere", "hub", time.Minute, "203.0.113.20")
	if err := h.AllowAnswer(context.Background(), nil, *a); err != nil {
		t.Fatal(err)
	}
	// Released only after the firewall holds it.
	if _, ok := fw.Lookup("fqdngate-sphere-hub", addr("203.0.113.20")); !ok {
		t.Fatal("AllowAnswer returned before the firewall acknowledged")
	}
	fw.Hang()
	defer fw.Release()
	err := h.AllowAnswer(context.Background(), nil, *answerOf("sphere", "hub", time.Minute, "203.0.113.21"))
	if !errors.Is(err, enforce.ErrHoldTimeout) {
		t.Errorf("hung firewall: %v, want ErrHoldTimeout", err)
	}
}

func TestOverflowNeverBlocks(t *testing.T) {
	fw := feedstest.NewPANOS("k")
	fw.Hang()
	defer fw.Release()
	l := newPushLab(t, "panos", fw, "k", false, func(o *PushOptions) { o.Queue = 4 })
	for range 50 {
		l.p.Offer(answerOf("sphere", "hub", time.Minute, "203.0.113.20"))
	}
	if l.p.Stats().Overflow.Load() == 0 {
		t.Error("a full queue did not count an overflow")
	}
}

// An answer that did not fit in the queue reaches the firewall with the
// resync that follows.
func TestOverflowIsResynced(t *testing.T) {
	fw := feedstest.NewPANOS("k")
	l := newPushLab(t, "panos", fw, "k", false, func(o *PushOptions) { o.Queue, o.OverflowResync = 1, 20*time.Millisecond })
	eventually(t, "the first resync", func() bool { return l.p.Stats().Resyncs.Load() == 1 })
	fw.Hang()
	var lost []string
	for i := range 20 {
		a := answerOf("sphere", "hub", time.Minute, fmt.Sprintf("203.0.113.%d", 10+i))
		l.led.Record(time.Now(), *a)
		if !l.p.Offer(a) {
			lost = append(lost, a.Addrs[0].String())
		}
	}
	fw.Release()
	if len(lost) == 0 {
		t.Fatal("nothing overflowed")
	}
	eventually(t, "the lost answers registered", func() bool {
		for _, s := range lost {
			if _, ok := fw.Lookup("fqdngate-sphere-hub", addr(s)); !ok {
				return false
			}
		}
		return true
	})
}

// A FortiGate feed has no per-entry timeout: the periodic snapshot is
// how an expired address leaves it.
func TestFortigateExpiryBySnapshot(t *testing.T) {
	fw := feedstest.NewFortiGate("k", "fqdngate-sphere-hub", "fqdngate-sphere-bus", "fqdngate-cams-hub")
	l := newPushLab(t, "fortigate", fw, "k", false, func(o *PushOptions) { o.Refresh = 20 * time.Millisecond })
	a := answerOf("sphere", "hub", 200*time.Millisecond, "203.0.113.20")
	l.led.Record(time.Now(), *a)
	l.p.Offer(a)
	eventually(t, "the add", func() bool { _, ok := fw.Lookup("fqdngate-sphere-hub", addr("203.0.113.20")); return ok })
	eventually(t, "the expired address gone from the feed", func() bool {
		_, ok := fw.Lookup("fqdngate-sphere-hub", addr("203.0.113.20"))
		return !ok
	})
}

// refusing is a kernel enforcer that refuses every grant.
type refusing struct{ enforce.Enforcer }

func (refusing) Allow(context.Context, []enforce.Grant) error { return errors.New("kernel says no") }

func TestHoldKernelRefusalIsNotPushed(t *testing.T) {
	fw := feedstest.NewPANOS("k")
	l := newPushLab(t, "panos", fw, "k", true, nil)
	eventually(t, "the first resync", func() bool { return l.p.Stats().Resyncs.Load() == 1 })
	h := NewHold(refusing{enforce.None{}}, []*Pusher{l.p}, time.Second)
	if err := h.AllowAnswer(context.Background(), []enforce.Grant{{}}, *answerOf("sphere", "hub", time.Minute, "203.0.113.20")); err == nil {
		t.Fatal("a kernel refusal let the answer through")
	}
	// Then an accepted answer, to know the pusher has worked through
	// whatever was queued before it.
	h2 := NewHold(enforce.None{}, []*Pusher{l.p}, time.Second)
	if err := h2.AllowAnswer(context.Background(), nil, *answerOf("sphere", "hub", time.Minute, "203.0.113.21")); err != nil {
		t.Fatal(err)
	}
	if _, ok := fw.Lookup("fqdngate-sphere-hub", addr("203.0.113.20")); ok {
		t.Error("the firewall was told an address the kernel refused")
	}
}
