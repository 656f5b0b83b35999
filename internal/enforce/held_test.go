package enforce

import (
	"net/netip"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/ledger"
)

// The held map forgets what expired before the cutoff, one shard per
// sweep, and keeps everything else; covers answers from what is left.
func TestHeldMapSweepsAShardAtATime(t *testing.T) {
	var h heldMap
	h.init()
	now := time.Unix(1_800_000_000, 0)
	cutoff := now.Add(-heldKeep).UnixNano()
	var old, live []Grant
	for i := range 400 {
		e := ledger.Elem{Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), Port: tcp443}
		e.Port.Lo, e.Port.Hi = uint16(1000+i), uint16(1000+i)
		exp := now.Add(time.Minute)
		if i%2 == 0 {
			exp = now.Add(-2 * heldKeep) // expired long before the cutoff
			old = append(old, Grant{Elem: e, Expires: exp})
		} else {
			live = append(live, Grant{Elem: e, Expires: exp})
		}
		h.set(keyOf(e), heldElem{expires: exp.UnixNano(), timeout: time.Minute})
	}
	count := func() int {
		n := 0
		for i := range h.shards {
			n += len(h.shards[i].m)
		}
		return n
	}
	h.dropBefore(h.shard(keyOf(old[0].Elem)), cutoff)
	if n := count(); n == 400 || n <= 200 {
		t.Fatalf("one sweep left %d of 400 (200 expired): want some, not all, of the expired gone", n)
	}
	for i := range heldShards {
		h.dropBefore(i, cutoff)
	}
	if n := count(); n != 200 {
		t.Fatalf("after a sweep of every shard %d held, want the 200 live ones", n)
	}
	if !h.covers(live, 0) {
		t.Error("a live element was dropped")
	}
	for _, g := range old {
		if h.covers([]Grant{g}, 0) {
			t.Fatalf("%v expired and is still held", g.Elem)
		}
	}
}
