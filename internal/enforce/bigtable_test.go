package enforce

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/lab/labtest"
	"github.com/fqdngate/fqdngate/internal/ledger"
)

// TestRestoreLargeLedger: a restart (or a rebuild after a flush) puts a
// large ledger's elements back in the one transaction that makes the
// table, however much larger than the socket's default buffer it is.
func TestRestoreLargeLedger(t *testing.T) {
	labtest.Require(t, "ip", "nft")
	ns := labtest.NS(t, "enf")
	const n = 40000
	now := time.Now()
	grants := make([]Grant, 0, n)
	for i := range n {
		addr := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xcd, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
		grants = append(grants, Grant{Elem: ledger.Elem{Client: client6, Addr: addr, Port: tcp443}, Expires: now.Add(time.Hour)})
	}
	nf := openInNS(t, ns, testSpec(), WithInitial(grants))
	out, err := ns.Run("nft", "list", "set", "inet", "fqdngate", "allow6")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out, "expires"); got != n {
		t.Fatalf("%d elements in allow6 after the restore, want %d", got, n)
	}
	// And once more over the table that is there, as a rebuild does.
	if err := nf.rebuild(testSpec(), grants); err != nil {
		t.Fatalf("rebuild over a large table: %v", err)
	}
}
