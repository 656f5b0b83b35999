package enforce

import (
	"context"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/fqdngate/fqdngate/internal/lab"
	"github.com/fqdngate/fqdngate/internal/lab/labtest"
	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/policy"
)

var (
	client4 = netip.MustParseAddr("192.0.2.10")
	client6 = netip.MustParseAddr("2001:db8:1::10")
	tcp443  = policy.PortRange{Proto: policy.ProtoTCP, Lo: 443, Hi: 443}
	tcpRng  = policy.PortRange{Proto: policy.ProtoTCP, Lo: 8000, Hi: 8100}
)

func openInNS(t testing.TB, ns *lab.NS, spec Spec, opts ...Option) *NFT {
	t.Helper()
	n, err := Open(spec, append([]Option{WithNetNS(ns.FD())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func testSpec() Spec {
	return Spec{
		Table: "fqdngate", Hook: "forward", NFLogGroup: 53,
		Clients: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8:1::/64")},
		DNS4:    netip.MustParseAddrPort("192.0.2.1:53"),
		DNS6:    netip.MustParseAddrPort("[2001:db8:1::1]:53"),
	}
}

// expiresIn parses "expires 1m59s123ms" of the element of addr in nft's
// listing of set.
func expiresIn(t *testing.T, ns *lab.NS, set, addr string) (time.Duration, bool) {
	t.Helper()
	out, err := ns.Run("nft", "list", "set", "inet", "fqdngate", set)
	if err != nil {
		t.Fatal(err)
	}
	flat := strings.Join(strings.Fields(out), " ")
	re := regexp.MustCompile(regexp.QuoteMeta(addr) + ` [^,}]*?expires ([0-9hms]+)`)
	m := re.FindStringSubmatch(flat)
	if m == nil {
		return 0, false
	}
	d, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatalf("parse %q: %v", m[1], err)
	}
	return d, true
}

// eachRefreshMode runs f against a fresh table twice: with the refresh
// this kernel supports, and with the add-delete-add of kernels before 6.12.
func eachRefreshMode(t *testing.T, f func(t *testing.T, ns *lab.NS, n *NFT)) {
	labtest.Require(t, "ip", "nft")
	for _, legacy := range []bool{false, true} {
		t.Run("legacy="+strconv.FormatBool(legacy), func(t *testing.T) {
			ns := labtest.NS(t, "enf")
			var opts []Option
			if legacy {
				opts = append(opts, WithLegacyRefresh())
			}
			f(t, ns, openInNS(t, ns, testSpec(), opts...))
		})
	}
}

func TestNFTElementsRefreshAndRevoke(t *testing.T) {
	eachRefreshMode(t, func(t *testing.T, ns *lab.NS, n *NFT) {
		ctx := context.Background()
		now := time.Now()
		e4 := ledger.Elem{Client: client4, Addr: netip.MustParseAddr("203.0.113.7"), Port: tcp443}
		e6 := ledger.Elem{Client: client6, Addr: netip.MustParseAddr("2001:db8:cd::7"), Port: tcp443}
		r4 := ledger.Elem{Client: client4, Addr: netip.MustParseAddr("203.0.113.8"), Port: tcpRng}
		if err := n.Allow(ctx, []Grant{{Elem: e4, Expires: now.Add(time.Minute)}, {Elem: e6, Expires: now.Add(time.Minute)}, {Elem: r4, Expires: now.Add(time.Minute)}}); err != nil {
			t.Fatal(err)
		}
		if d, ok := expiresIn(t, ns, "allow4", "192.0.2.10 . 203.0.113.7 . tcp . 443"); !ok || d > time.Minute || d < 50*time.Second {
			t.Fatalf("allow4 element: expires %v, present %v", d, ok)
		}
		if _, ok := expiresIn(t, ns, "allow6", "2001:db8:1::10 . 2001:db8:cd::7 . tcp . 443"); !ok {
			t.Fatal("allow6 element missing")
		}
		if _, ok := expiresIn(t, ns, "allow4r", "192.0.2.10 . 203.0.113.8 . tcp . 8000-8100"); !ok {
			t.Fatal("range element missing")
		}
		// A longer answer extends the element.
		if err := n.Allow(ctx, []Grant{{Elem: e4, Expires: now.Add(10 * time.Minute)}}); err != nil {
			t.Fatal(err)
		}
		if d, _ := expiresIn(t, ns, "allow4", "192.0.2.10 . 203.0.113.7 . tcp . 443"); d < 9*time.Minute {
			t.Fatalf("refresh did not extend: expires in %v", d)
		}
		// A shorter one never shortens it, and costs no transaction:
		// the element is held already, as Holds tells the handler.
		shorter := []Grant{{Elem: e4, Expires: now.Add(2 * time.Minute)}}
		if !n.Holds(shorter) || n.Holds([]Grant{{Elem: e4, Expires: now.Add(time.Hour)}}) {
			t.Fatal("Holds: want true for a shorter lifetime than held, false for a longer one")
		}
		before := n.WriterStats().Transactions
		if err := n.Allow(ctx, shorter); err != nil {
			t.Fatal(err)
		}
		if tx := n.WriterStats().Transactions - before; tx != 0 {
			t.Fatalf("allowing a held element committed %d transactions", tx)
		}
		if d, _ := expiresIn(t, ns, "allow4", "192.0.2.10 . 203.0.113.7 . tcp . 443"); d < 9*time.Minute {
			t.Fatalf("shorter answer shortened the element to %v", d)
		}
		if err := n.Revoke(ctx, []ledger.Elem{e4, r4}); err != nil {
			t.Fatal(err)
		}
		if _, ok := expiresIn(t, ns, "allow4", "203.0.113.7"); ok {
			t.Fatal("revoked element still present")
		}
		if _, ok := expiresIn(t, ns, "allow4r", "203.0.113.8"); ok {
			t.Fatal("revoked range element still present")
		}
		// Revoking what is gone is not an error.
		if err := n.Revoke(ctx, []ledger.Elem{e4}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestNFTConcurrentAllowsShareTransactions(t *testing.T) {
	labtest.Require(t, "ip", "nft")
	ns := labtest.NS(t, "enf")
	n := openInNS(t, ns, testSpec())
	const callers = 200
	errc := make(chan error, callers)
	now := time.Now()
	for i := range callers {
		go func() {
			addr := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
			errc <- n.Allow(context.Background(), []Grant{{Elem: ledger.Elem{Client: client4, Addr: addr, Port: tcp443}, Expires: now.Add(time.Minute)}})
		}()
	}
	for range callers {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	out, err := ns.Run("nft", "list", "set", "inet", "fqdngate", "allow4")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out, "expires"); got != callers {
		t.Fatalf("%d elements in the kernel, want %d", got, callers)
	}
	st := n.WriterStats()
	if st.Requests != callers || st.Elements != callers || st.Transactions >= callers || st.Transactions == 0 {
		t.Fatalf("writer %+v: want %d requests and elements in fewer transactions", st, callers)
	}
	// Every transaction's time in the kernel is in the histogram.
	var inBuckets uint64
	for _, c := range st.Commit.Counts {
		inBuckets += c
	}
	if st.Commit.Count != st.Transactions || inBuckets != st.Commit.Count || st.Commit.Sum <= 0 {
		t.Fatalf("commit histogram %+v for %d transactions", st.Commit, st.Transactions)
	}
}

func TestTeardownTouchesOnlyOwnTable(t *testing.T) {
	labtest.Require(t, "ip", "nft")
	ns := labtest.NS(t, "enf")
	if _, err := ns.Run("nft", "add table inet operator; add chain inet operator input { type filter hook input priority 0; }"); err != nil {
		t.Fatal(err)
	}
	n := openInNS(t, ns, testSpec())
	n.Close()
	cc, err := nftables.New(nftables.WithNetNSFd(ns.FD()))
	if err != nil {
		t.Fatal(err)
	}
	// Opening again replaces our table and leaves the operator's alone.
	openInNS(t, ns, testSpec()).Close()
	if err := Teardown("fqdngate", cc); err != nil {
		t.Fatal(err)
	}
	if err := Teardown("fqdngate", cc); err != nil {
		t.Fatalf("second teardown: %v", err)
	}
	out, err := ns.Run("nft", "list", "tables")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) != "table inet operator" {
		t.Fatalf("tables after teardown:\n%s", out)
	}
}

func TestReleaseAtLeast(t *testing.T) {
	for rel, want := range map[string]bool{
		"6.12.0": true, "6.18.44-fc-v782": true, "7.0": true, "6.11.9": false, "5.15.0-91-generic": false, "6.12-rc1": true, "x": false,
	} {
		if got := releaseAtLeast(rel, 6, 12); got != want {
			t.Errorf("releaseAtLeast(%q) = %v", rel, got)
		}
	}
}

// TestNFTRefreshWithTheSameLifetime: Linux updates an existing element only
// when it is given a timeout other than the one it holds, so a device that
// re-resolves a name and gets the same lifetime again must still see its
// element extended (found by the CDN lab: front-door addresses recurring
// across names were dropped at their first expiry).
func TestNFTRefreshWithTheSameLifetime(t *testing.T) {
	eachRefreshMode(t, func(t *testing.T, ns *lab.NS, n *NFT) {
		ctx := context.Background()
		e := ledger.Elem{Client: client4, Addr: netip.MustParseAddr("203.0.113.27"), Port: tcp443}
		const life = 2 * time.Second
		if err := n.Allow(ctx, []Grant{{Elem: e, Expires: time.Now().Add(life)}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		for range 3 { // the same lifetime, again and again
			if err := n.Allow(ctx, []Grant{{Elem: e, Expires: time.Now().Add(life)}}); err != nil {
				t.Fatal(err)
			}
		}
		if d, ok := expiresIn(t, ns, "allow4", "192.0.2.10 . 203.0.113.27 . tcp . 443"); !ok || d < life-300*time.Millisecond {
			t.Fatalf("refresh with the same lifetime: expires in %v (present %v), want about %v", d, ok, life)
		}
	})
}

// TestNFTGCInterval: the sets are built with the kernel's gc interval of one
// second and updated to the spec's, also after a rebuild, which the
// operator sees in nft's listing; elements still expire on time (the
// lookup checks expiry, whatever the collector does).
func TestNFTGCInterval(t *testing.T) {
	labtest.Require(t, "ip", "nft")
	ns := labtest.NS(t, "enf")
	spec := testSpec()
	spec.GCInterval = 10 * time.Second
	n := openInNS(t, ns, spec)
	listed := func() string {
		t.Helper()
		out, err := ns.Run("nft", "list", "table", "inet", "fqdngate")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := strings.Count(listed(), "gc-interval 10s"); got != 4 {
		t.Fatalf("%d of 4 sets have gc-interval 10s:\n%s", got, listed())
	}
	spec.Clients = spec.Clients[:1]
	if err := n.Rebuild(context.Background(), spec, nil); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(listed(), "gc-interval 10s"); got != 4 {
		t.Fatalf("after a rebuild, %d of 4 sets have gc-interval 10s:\n%s", got, listed())
	}
	d, err := gcIntervalOf(ns.FD(), n.table, setAllow6R)
	if err != nil || d != 10*time.Second {
		t.Fatalf("read back %s, %v; want 10s", d, err)
	}
}
