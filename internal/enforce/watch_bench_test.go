package enforce

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/lab/labtest"
	"github.com/fqdngate/fqdngate/internal/ledger"
)

// BenchmarkWatchCost is what the watch adds to the answer path: an Allow
// of one new element (a commit, then the writer reads the event socket),
// many at once, and a Holds of a held one (a peek at the event socket),
// unwatched and watched.
func BenchmarkWatchCost(b *testing.B) {
	labtest.Require(b, "ip", "nft")
	for _, watched := range []bool{false, true} {
		name := "unwatched"
		if watched {
			name = "watched"
		}
		setup := func(b *testing.B) *NFT {
			ns := labtest.NS(b, "bench")
			n := openInNS(b, ns, testSpec())
			if watched {
				ctx, cancel := context.WithCancel(context.Background())
				b.Cleanup(cancel)
				if err := n.Watch(ctx, nil); err != nil {
					b.Fatal(err)
				}
			}
			return n
		}
		b.Run("Allow/"+name, func(b *testing.B) {
			n := setup(b)
			exp := time.Now().Add(time.Hour)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				a := netip.AddrFrom4([4]byte{203, byte(i >> 16), byte(i >> 8), byte(i)})
				if err := n.Allow(context.Background(), []Grant{{Elem: ledger.Elem{Client: client4, Addr: a, Port: tcp443}, Expires: exp}}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("Batch/"+name, func(b *testing.B) {
			// 32 callers at once, group-committed: the kernel writes an
			// event per element for the watch (dropped by its filter).
			n := setup(b)
			exp := time.Now().Add(time.Hour)
			var next atomic.Uint64
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					v := next.Add(1)
					a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 8: byte(v >> 24), 9: byte(v >> 16), 10: byte(v >> 8), 11: byte(v)})
					if err := n.Allow(context.Background(), []Grant{{Elem: ledger.Elem{Client: client6, Addr: a, Port: tcp443}, Expires: exp}}); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
		b.Run("Holds/"+name, func(b *testing.B) {
			n := setup(b)
			g := Grant{Elem: ledger.Elem{Client: client4, Addr: netip.MustParseAddr("203.0.113.1"), Port: tcp443}, Expires: time.Now().Add(time.Hour)}
			if err := n.Allow(context.Background(), []Grant{g}); err != nil {
				b.Fatal(err)
			}
			shorter := []Grant{{Elem: g.Elem, Expires: time.Now().Add(time.Minute)}}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if !n.Holds(shorter) {
					b.Fatal("not held")
				}
			}
		})
	}
}
