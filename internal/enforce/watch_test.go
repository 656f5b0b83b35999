package enforce

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fqdngate/fqdngate/internal/lab"
	"github.com/fqdngate/fqdngate/internal/lab/labtest"
	"github.com/fqdngate/fqdngate/internal/ledger"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// structure is the table's listing without elements and handles: what
// the admin would compare.
func structure(t *testing.T, ns *lab.NS) string {
	t.Helper()
	out, err := ns.Run("nft", "list", "table", "inet", "fqdngate")
	if err != nil {
		t.Fatalf("list table: %v", err)
	}
	return regexp.MustCompile(`(?s)elements = \{.*?\}`).ReplaceAllString(out, "")
}

func elements(t *testing.T, ns *lab.NS) string {
	t.Helper()
	out, err := ns.Run("nft", "list", "set", "inet", "fqdngate", "allow4")
	if err != nil {
		return ""
	}
	return out
}

// TestWatchRestoresTheTable: another process's change to fqdngate's table
// (deleting it, flushing the ruleset, adding an element, a rule, or
// flushing a chain) makes it lost at once: Allow fails with ErrTableLost
// and Holds says no while the restore is held back. Then it is rebuilt
// with the ledger's grants and what the writer committed, without the
// intruder's element or rule, and answers are installed again.
func TestWatchRestoresTheTable(t *testing.T) {
	labtest.Require(t, "ip", "nft")
	cases := []struct{ name, script string }{
		{"delete table", "delete table inet fqdngate"},
		{"flush ruleset", "flush ruleset"},
		{"add element", "add element inet fqdngate allow4 { 192.0.2.10 . 198.51.100.99 . tcp . 443 timeout 1h }"},
		{"delete element", "delete element inet fqdngate allow4 { 192.0.2.10 . 203.0.113.2 . tcp . 443 }"},
		{"insert rule", "insert rule inet fqdngate check accept"},
		{"flush chain", "flush chain inet fqdngate filter"},
		{"chain policy", "chain inet fqdngate filter { policy drop; }"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := labtest.NS(t, "enf")
			n := openInNS(t, ns, testSpec())
			entered, release := make(chan struct{}, 1), make(chan struct{})
			n.beforeRestore = func() {
				entered <- struct{}{}
				<-release
			}
			now := time.Now()
			fromLedger := Grant{Elem: ledger.Elem{Client: client4, Addr: netip.MustParseAddr("203.0.113.1"), Port: tcp443}, Expires: now.Add(time.Hour)}
			committed := Grant{Elem: ledger.Elem{Client: client4, Addr: netip.MustParseAddr("203.0.113.2"), Port: tcp443}, Expires: now.Add(time.Hour)}
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			if err := n.Watch(ctx, func() []Grant { return []Grant{fromLedger} }); err != nil {
				t.Fatal(err)
			}
			if err := n.Allow(ctx, []Grant{committed}); err != nil {
				t.Fatal(err)
			}
			shorter := []Grant{{Elem: committed.Elem, Expires: now.Add(time.Minute)}}
			if !n.Holds(shorter) {
				t.Fatal("Holds before the change: false")
			}
			built := structure(t, ns)
			if _, err := ns.Run("nft", tc.script); err != nil {
				t.Fatal(err)
			}
			select {
			case <-entered:
			case <-time.After(5 * time.Second):
				t.Fatal("the change was not detected")
			}
			if !n.Lost() {
				t.Fatal("restoring, but not lost")
			}
			if err := n.Allow(ctx, []Grant{committed}); !errors.Is(err, ErrTableLost) {
				t.Fatalf("Allow while lost: %v, want ErrTableLost", err)
			}
			if n.Holds(shorter) {
				t.Fatal("Holds while lost: true")
			}
			close(release)
			waitFor(t, "the restore", func() bool { return !n.Lost() })
			if st := n.TamperStats(); st.Restored != 1 || st.Detections == 0 {
				t.Fatalf("stats %+v: want one restore after a detection", st)
			}
			if got := structure(t, ns); got != built {
				t.Fatalf("restored table differs from the built one:\n%s\nwant:\n%s", got, built)
			}
			els := elements(t, ns)
			for _, want := range []string{"203.0.113.1 . tcp . 443", "203.0.113.2 . tcp . 443"} {
				if !strings.Contains(els, want) {
					t.Errorf("restored set lacks %s:\n%s", want, els)
				}
			}
			if strings.Contains(els, "198.51.100.99") {
				t.Errorf("restored set keeps the intruder's element:\n%s", els)
			}
			if err := n.Allow(ctx, []Grant{{Elem: ledger.Elem{Client: client4, Addr: netip.MustParseAddr("203.0.113.3"), Port: tcp443}, Expires: now.Add(time.Hour)}}); err != nil {
				t.Fatalf("Allow after the restore: %v", err)
			}
		})
	}
}

// TestWatchIgnoresOwnWrites: fqdngate's own transactions (answers,
// revocations, a reload's rebuild, the gc-interval update), other tables'
// changes, and reading or resetting counters are not tampering.
func TestWatchIgnoresOwnWrites(t *testing.T) {
	labtest.Require(t, "ip", "nft")
	ns := labtest.NS(t, "enf")
	spec := testSpec()
	spec.GCInterval = 10 * time.Second
	n, ctx := watchedInNS(t, ns, spec, nil)
	w := n.watch.Load()
	now := time.Now()
	var elems []ledger.Elem
	for i := range 50 {
		e := ledger.Elem{Client: client4, Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), Port: tcp443}
		elems = append(elems, e)
		if err := n.Allow(ctx, []Grant{{Elem: e, Expires: now.Add(time.Minute)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Revoke(ctx, elems[:10]); err != nil {
		t.Fatal(err)
	}
	spec.Clients = spec.Clients[:1]
	if err := n.Rebuild(ctx, spec, []Grant{{Elem: elems[20], Expires: now.Add(time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	// An admin's own table, and an admin reading fqdngate's and resetting
	// its counters.
	for _, script := range []string{
		"add table inet filter; add chain inet filter input { type filter hook input priority 0; }; add rule inet filter input accept; flush table inet filter",
		"list ruleset", "reset counters table inet fqdngate",
	} {
		if _, err := ns.Run("nft", script); err != nil {
			t.Fatal(err)
		}
	}
	// Every event of the above is queued by now: read them, and check.
	if !n.synced() {
		t.Fatal("own writes or another table's change made the table lost")
	}
	n.checkTable(w)
	if st := n.TamperStats(); st.Detections != 0 || st.Lost {
		t.Fatalf("stats %+v: want no detection", st)
	}
	if err := n.Allow(ctx, []Grant{{Elem: elems[30], Expires: now.Add(time.Minute)}}); err != nil {
		t.Fatal(err)
	}
}

// TestWatchCheckFindsWhatEventsMissed: the periodic check alone (events
// unread) finds a table changed behind fqdngate's back.
func TestWatchCheckFindsWhatEventsMissed(t *testing.T) {
	labtest.Require(t, "ip", "nft")
	ns := labtest.NS(t, "enf")
	n, _ := watchedInNS(t, ns, testSpec(), nil)
	w := n.watch.Load()
	// Hold the event reader off, so only the check can tell.
	w.mu.Lock()
	if _, err := ns.Run("nft", "add rule inet fqdngate check accept"); err != nil {
		w.mu.Unlock()
		t.Fatal(err)
	}
	tbl, want := n.table, n.snap
	got, err := readSnapshot(w.check, tbl)
	w.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if d := want.diff(got); d != "chain check changed" {
		t.Fatalf("diff %q, want chain check changed", d)
	}
	waitFor(t, "the restore", func() bool { return n.TamperStats().Restored == 1 && !n.Lost() })
}

// TestWatchNeedsOwnSocket: with a connection given, fqdngate's own
// changes cannot be told apart, and Watch refuses.
func TestWatchNeedsOwnSocket(t *testing.T) {
	n := &NFT{}
	if err := n.Watch(context.Background(), nil); err == nil {
		t.Fatal("Watch without Open's own socket: want an error")
	}
}

func TestElemOfInvertsKeyOf(t *testing.T) {
	for _, e := range []ledger.Elem{
		{Client: client4, Addr: netip.MustParseAddr("203.0.113.7"), Port: tcp443},
		{Client: client6, Addr: netip.MustParseAddr("2001:db8:cd::7"), Port: tcpRng},
		{Addr: netip.MustParseAddr("203.0.113.8"), Port: tcp443},
		{Client: netip.MustParseAddr("::ffff:192.0.2.1"), Addr: netip.MustParseAddr("2001:db8::1"), Port: tcp443},
	} {
		if got := elemOf(keyOf(e)); got != e {
			t.Errorf("elemOf(keyOf(%v)) = %v", e, got)
		}
	}
}

// TestWatchRetriesAFailedRestore: while another socket owns a table of
// fqdngate's name, the rebuild fails; the table stays lost (Allow fails,
// Holds says no), the failures are counted, and once that socket is gone
// a retry restores the table.
func TestWatchRetriesAFailedRestore(t *testing.T) {
	labtest.Require(t, "ip", "nft")
	ns := labtest.NS(t, "enf")
	g := Grant{Elem: ledger.Elem{Client: client4, Addr: netip.MustParseAddr("203.0.113.1"), Port: tcp443}, Expires: time.Now().Add(time.Hour)}
	n, ctx := watchedInNS(t, ns, testSpec(), func() []Grant { return []Grant{g} })
	squatter, err := lab.OwnTable(ns, "fqdngate")
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()
	waitFor(t, "a failed restore", func() bool { return n.TamperStats().RestoreFailures >= 2 })
	if err := n.Allow(ctx, []Grant{g}); !errors.Is(err, ErrTableLost) || n.Holds([]Grant{g}) || !n.Lost() {
		t.Fatalf("while the restore fails: Allow %v, Holds %v, Lost %v; want ErrTableLost, false, true", err, n.Holds([]Grant{g}), n.Lost())
	}
	squatter.Close()
	waitFor(t, "the restore", func() bool { return !n.Lost() })
	if st := n.TamperStats(); st.Restored != 1 {
		t.Fatalf("stats %+v: want one restore", st)
	}
	if !strings.Contains(elements(t, ns), "203.0.113.1 . tcp . 443") {
		t.Fatalf("restored set lacks the ledger's grant:\n%s", elements(t, ns))
	}
}

// TestWatchUnreadChangeWithholds is the race of an answer with someone
// else's change that fqdngate has not read yet (the event reader held
// off): Holds says no while the change waits unread, and an Allow whose
// transaction the kernel took after the change fails with ErrTableLost,
// because the writer reads the events queued before its commit first.
func TestWatchUnreadChangeWithholds(t *testing.T) {
	labtest.Require(t, "ip", "nft")
	ns := labtest.NS(t, "enf")
	n, ctx := watchedInNS(t, ns, testSpec(), nil)
	now := time.Now()
	held := Grant{Elem: ledger.Elem{Client: client4, Addr: netip.MustParseAddr("203.0.113.1"), Port: tcp443}, Expires: now.Add(time.Hour)}
	if err := n.Allow(ctx, []Grant{held}); err != nil {
		t.Fatal(err)
	}
	shorter := []Grant{{Elem: held.Elem, Expires: now.Add(time.Minute)}}
	if !n.Holds(shorter) {
		t.Fatal("Holds before the change: false")
	}
	w := n.watch.Load()
	w.mu.Lock()
	if _, err := ns.Run("nft", "add element inet fqdngate allow4 { 192.0.2.10 . 198.51.100.99 . tcp . 443 }"); err != nil {
		w.mu.Unlock()
		t.Fatal(err)
	}
	if n.Lost() || n.Holds(shorter) {
		w.mu.Unlock()
		t.Fatalf("with the change unread: Lost %v, Holds %v; want false, false", n.Lost(), n.Holds(shorter))
	}
	tx := n.WriterStats().Transactions
	res := make(chan error, 1)
	go func() {
		res <- n.Allow(ctx, []Grant{{Elem: ledger.Elem{Client: client4, Addr: netip.MustParseAddr("203.0.113.2"), Port: tcp443}, Expires: now.Add(time.Hour)}})
	}()
	// The kernel took the transaction, after the change; the event reader
	// cannot have marked the table lost (it waits for w.mu).
	waitFor(t, "the commit", func() bool { return n.WriterStats().Transactions > tx })
	w.mu.Unlock()
	if err := <-res; !errors.Is(err, ErrTableLost) {
		t.Fatalf("Allow committed after an unread change: %v, want ErrTableLost", err)
	}
	waitFor(t, "the restore", func() bool { return !n.Lost() && n.TamperStats().Restored == 1 })
}

// TestWatchOverrunCountsAsLoss: when the kernel drops events (the socket
// buffer overran), what they said is unknown; the table is rebuilt, even
// though the changes here were to another table.
func TestWatchOverrunCountsAsLoss(t *testing.T) {
	labtest.Require(t, "ip", "nft")
	ns := labtest.NS(t, "enf")
	n, _ := watchedInNS(t, ns, testSpec(), nil)
	w := n.watch.Load()
	if err := w.raw.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 1) }); err != nil {
		t.Fatal(err)
	}
	var script strings.Builder
	script.WriteString("add table inet filter; add set inet filter s { type ipv4_addr; }\n")
	for i := range 200 {
		fmt.Fprintf(&script, "add element inet filter s { 198.51.100.%d }\n", i)
	}
	w.mu.Lock()
	_, err := ns.Run("nft", script.String())
	w.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the restore", func() bool { return n.TamperStats().Restored == 1 && !n.Lost() })
}

// watchedInNS opens fqdngate's table in ns and watches it until the test
// ends; grants is what the watch rebuilds the table with (the ledger).
func watchedInNS(t *testing.T, ns *lab.NS, spec Spec, grants func() []Grant) (*NFT, context.Context) {
	t.Helper()
	n := openInNS(t, ns, spec)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := n.Watch(ctx, grants); err != nil {
		t.Fatal(err)
	}
	return n, ctx
}
