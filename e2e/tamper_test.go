package e2e

import (
	"io"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/lab"
)

// never is an address no device was ever told.
var never = netip.MustParseAddr("203.0.113.200")

// asker is a device asking for www.example.com without pause, that checks
// every NOERROR answer against the kernel the moment it arrives: the
// answered address must be in fqdngate's set for that device then. Only
// answers to queries sent after armed are judged (one sent before the
// change may have been released, rightly, just before it).
type asker struct {
	armed                     atomic.Bool
	stop                      chan struct{}
	done                      chan struct{}
	mu                        sync.Mutex
	judged, servfail, missing int
	firstMissing              string
}

func startAsker(t *testing.T, tp *topo, dev *lab.NS, devAddr string) *asker {
	a := &asker{stop: make(chan struct{}), done: make(chan struct{})}
	elem := devAddr + " . 203.0.113.5 . tcp . 443"
	go func() {
		defer close(a.done)
		for {
			select {
			case <-a.stop:
				return
			default:
			}
			armed := a.armed.Load()
			r, err := tp.resolve(dev, "www.example.com.", dns.TypeA, gwDevAddr4)
			if err != nil || !armed {
				continue
			}
			switch {
			case r.Rcode == dns.RcodeServerFailure:
				a.mu.Lock()
				a.judged++
				a.servfail++
				a.mu.Unlock()
			case r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0:
				out, _ := tp.gw.Run("nft", "list", "set", "inet", "fqdngate", "allow4")
				a.mu.Lock()
				a.judged++
				if !strings.Contains(out, elem) {
					a.missing++
					if a.firstMissing == "" {
						a.firstMissing = out
					}
				}
				a.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { a.halt() })
	return a
}

func (a *asker) halt() {
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	<-a.done
}

// readyz returns whether /readyz says ready, and its text.
func (tp *topo) readyz(t *testing.T) (bool, string) {
	t.Helper()
	resp, err := tp.apiClient().Get(apiBase + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == 200, strings.TrimSpace(string(body))
}

// pollUntil polls cond every 10 ms until it holds or d has passed.
func pollUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// enforcing checks what a device sees of a working table: a name it
// resolved connects, an address it was never told is dropped.
func (tp *topo) enforcing(t *testing.T, www netip.Addr) {
	t.Helper()
	c, err := connect(tp.devA, www, 443, 2*time.Second)
	if err != nil {
		t.Fatalf("connect %v:443, answered before the loss: %v", www, err)
	}
	c.Close()
	for _, a := range tp.addrsOf(t, tp.devA, "www.example.com.", dns.TypeA, gwDevAddr4) {
		c, err := connect(tp.devA, a, 443, 2*time.Second)
		if err != nil {
			t.Fatalf("connect %v:443, answered after the restore: %v", a, err)
		}
		c.Close()
	}
	if _, err := connect(tp.devA, never, 443, dropWait); !dropped(err) {
		t.Fatalf("connect %v:443, never answered: %v, want dropped", never, err)
	}
}

// TestTableTamper: an admin's `nft flush ruleset` (what restarting
// Debian's nftables.service does) or `nft delete table inet fqdngate`
// while devices run: within a second the table is back, with what the
// devices were told, never-resolved addresses are dropped again, answers
// connect again, the restore is counted, and no answer to a query asked
// after the change was released without its address in the kernel.
func TestTableTamper(t *testing.T) {
	for _, tc := range []struct{ name, script string }{
		{"flush ruleset", "flush ruleset"},
		{"delete table", "delete table inet fqdngate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTopo(t, "enforce")
			www := tp.addrsOf(t, tp.devA, "www.example.com.", dns.TypeA, gwDevAddr4)[0]
			tp.enforcing(t, www)
			ask := startAsker(t, tp, tp.devB, devBAddr4)
			before := tp.metrics(t)["fqdngate_enforce_table_restored_total"]
			if _, err := tp.gw.Run("nft", tc.script); err != nil {
				t.Fatal(err)
			}
			ask.armed.Store(true)
			if !pollUntil(time.Second, func() bool {
				return tp.metrics(t)["fqdngate_enforce_table_restored_total"] == before+1
			}) {
				t.Fatalf("table not restored within 1s of %q (restored_total %v, was %v)", tc.script,
					tp.metrics(t)["fqdngate_enforce_table_restored_total"], before)
			}
			if ok, why := tp.readyz(t); !ok {
				t.Errorf("readyz after the restore: %s", why)
			}
			tp.enforcing(t, www)
			// Let the asker judge a few answers after the restore too.
			ask.mu.Lock()
			n0 := ask.judged
			ask.mu.Unlock()
			pollUntil(5*time.Second, func() bool { ask.mu.Lock(); defer ask.mu.Unlock(); return ask.judged >= n0+3 })
			ask.halt()
			if ask.judged == 0 || ask.missing > 0 {
				t.Fatalf("%d answers after the change, %d SERVFAIL, %d released without their address in the kernel; first:\n%s",
					ask.judged, ask.servfail, ask.missing, ask.firstMissing)
			}
			t.Logf("%d answers after the change, %d SERVFAIL", ask.judged, ask.servfail)
			if m := tp.metrics(t); m["fqdngate_enforce_table_tampering_total"] < 1 || m["fqdngate_enforce_table_lost"] != 0 {
				t.Errorf("tampering_total %v, lost %v: want ≥1 and 0", m["fqdngate_enforce_table_tampering_total"], m["fqdngate_enforce_table_lost"])
			}
		})
	}
}

// TestTableHeldByAnother: while another program holds a table of
// fqdngate's name (created with the owner flag, so fqdngate cannot
// rebuild over it), the table stays lost: every answer that needs an
// address is SERVFAIL, never NOERROR, /readyz says not ready, and the
// failures are counted. Once that program is gone the table is restored
// and devices connect again.
func TestTableHeldByAnother(t *testing.T) {
	tp := newTopo(t, "enforce")
	www := tp.addrsOf(t, tp.devA, "www.example.com.", dns.TypeA, gwDevAddr4)[0]
	// devB has its answer installed: a repeat is one the table holds.
	tp.addrsOf(t, tp.devB, "www.example.com.", dns.TypeA, gwDevAddr4)
	squatter, err := lab.OwnTable(tp.gw, "fqdngate")
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()
	if !pollUntil(5*time.Second, func() bool { return tp.metrics(t)["fqdngate_enforce_table_restore_failures_total"] >= 1 }) {
		t.Fatal("no failed restore counted while the table name is held")
	}
	for i := range 5 {
		r, err := tp.resolve(tp.devB, "www.example.com.", dns.TypeA, gwDevAddr4)
		if err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeServerFailure || len(r.Answer) != 0 {
			t.Fatalf("query %d while the table is lost: %s with %d answers, want SERVFAIL and none", i, dns.RcodeToString[r.Rcode], len(r.Answer))
		}
	}
	if ok, why := tp.readyz(t); ok || !strings.Contains(why, "lost") {
		t.Errorf("readyz while lost: ready=%v %q", ok, why)
	}
	if m := tp.metrics(t); m["fqdngate_enforce_table_lost"] != 1 {
		t.Errorf("fqdngate_enforce_table_lost %v, want 1", m["fqdngate_enforce_table_lost"])
	}
	squatter.Close()
	// A failed restore is retried with backoff (at most 5 s apart).
	if !pollUntil(7*time.Second, func() bool { return tp.metrics(t)["fqdngate_enforce_table_restored_total"] == 1 }) {
		t.Fatal("table not restored after the other program let go")
	}
	if ok, why := tp.readyz(t); !ok {
		t.Errorf("readyz after the restore: %s", why)
	}
	tp.enforcing(t, www)
}
