package e2e

import (
	"io"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/lab"
)

// never is an address no device was ever told.
var never = netip.MustParseAddr("203.0.113.200")

// recvQ is the bytes queued on the gateway's UDP port 53 sockets.
func (tp *topo) recvQ(t *testing.T) int {
	t.Helper()
	out, err := tp.gw.Run("ss", "-ulnH", "sport = :53")
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 3 {
			n, _ := strconv.Atoi(f[1])
			total += n
		}
	}
	return total
}

// queriesWhileLost stops fqdngate, runs script on the table, then holds
// fqdngate's table name with an empty table only the test's socket may
// change (lab.OwnTable), so that the table stays missing, queues n
// queries from devB for an answer devB already holds (cached, its
// elements held), and lets fqdngate go on: it finds the change unread
// and the queries waiting at once, and cannot rebuild. Every answer must
// be SERVFAIL; it returns how many were not. The table name is let go
// when it returns.
func (tp *topo) queriesWhileLost(t *testing.T, script string, n int) (released int) {
	t.Helper()
	if err := tp.proc.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = tp.proc.Process.Signal(syscall.SIGCONT)
		}
	}
	defer resume()
	if _, err := tp.gw.Run("nft", script); err != nil {
		t.Fatal(err)
	}
	squatter, err := lab.OwnTable(tp.gw, "fqdngate")
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()
	type reply struct {
		r   *dns.Msg
		err error
	}
	replies := make(chan reply, n)
	for range n {
		go func() {
			r, err := tp.resolve(tp.devB, "www.example.com.", dns.TypeA, gwDevAddr4)
			replies <- reply{r, err}
		}()
	}
	if !pollUntil(5*time.Second, func() bool { return tp.recvQ(t) > 0 }) {
		t.Fatal("the queries never reached the gateway's socket")
	}
	resume()
	for range n {
		rp := <-replies
		switch {
		case rp.err != nil:
			t.Fatalf("query while lost: %v", rp.err)
		case rp.r.Rcode != dns.RcodeServerFailure || len(rp.r.Answer) > 0:
			released++
		}
	}
	return released
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

// cachedClients is defaultClients with the answer cache on: a repeated
// answer is released within microseconds, from the cache and the held
// elements, far sooner than a rebuild, which is the race to look at.
var cachedClients = strings.Replace(defaultClients, "cache_size: 0", "cache_size: 1000", 1)

// TestTableTamper: an admin's `nft flush ruleset` (what restarting
// Debian's nftables.service does) or `nft delete table inet fqdngate`
// while devices run: within a second the table is back, with what the
// devices were told; never-resolved addresses are dropped again, answers
// connect again, and the restore is counted. And no answer is released
// while the table is missing: queries that meet the change unread
// (fqdngate stopped while the table goes and the queries arrive), and
// keep meeting it (the name held by another socket, so the rebuild
// fails), are all answered SERVFAIL; a cached answer whose elements
// fqdngate holds is the one that would be released at once otherwise.
func TestTableTamper(t *testing.T) {
	for _, tc := range []struct{ name, script string }{
		{"flush ruleset", "flush ruleset"},
		{"delete table", "delete table inet fqdngate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTopoClients(t, "enforce", cachedClients)
			www := tp.addrsOf(t, tp.devA, "www.example.com.", dns.TypeA, gwDevAddr4)[0]
			tp.addrsOf(t, tp.devB, "www.example.com.", dns.TypeA, gwDevAddr4)
			tp.enforcing(t, www)
			restored := func() float64 { return tp.metrics(t)["fqdngate_enforce_table_restored_total"] }
			before := restored()
			if _, err := tp.gw.Run("nft", tc.script); err != nil {
				t.Fatal(err)
			}
			if !pollUntil(time.Second, func() bool { return restored() == before+1 }) {
				t.Fatalf("table not restored within 1s of %q (restored_total %v, was %v)", tc.script, restored(), before)
			}
			if ok, why := tp.readyz(t); !ok {
				t.Errorf("readyz after the restore: %s", why)
			}
			tp.enforcing(t, www)

			const queries = 8
			if released := tp.queriesWhileLost(t, tc.script, queries); released > 0 {
				t.Fatalf("%d of %d answers released while the table was missing, want all SERVFAIL", released, queries)
			}
			// A failed restore is retried with backoff (at most 5 s apart).
			if !pollUntil(7*time.Second, func() bool { return restored() == before+2 }) {
				t.Fatalf("table not restored after the table name was let go (restored_total %v)", restored())
			}
			tp.enforcing(t, www)
			if m := tp.metrics(t); m["fqdngate_enforce_table_tampering_total"] < 2 || m["fqdngate_enforce_table_lost"] != 0 {
				t.Errorf("tampering_total %v, lost %v: want ≥2 and 0", m["fqdngate_enforce_table_tampering_total"], m["fqdngate_enforce_table_lost"])
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
