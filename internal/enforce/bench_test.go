package enforce

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/lab/labtest"
	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// BenchmarkAllowOneAnswer is the answer-to-kernel-ack path for one answer
// of two addresses on two ports (four elements), one caller at a time:
// the latency a query pays for "rule before answer".
func BenchmarkAllowOneAnswer(b *testing.B) {
	labtest.Require(b, "ip", "nft")
	ns := labtest.NS(b, "bench")
	n := openInNS(b, ns, testSpec())
	exp := time.Now().Add(time.Hour)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a := [4]byte{203, 0, byte(i >> 8), byte(i)}
		c := netip.AddrFrom4([4]byte{192, 0, 2, byte(i >> 16)})
		var grants []Grant
		for _, addr := range []netip.Addr{netip.AddrFrom4(a), netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})} {
			for _, p := range []uint16{443, 8883} {
				grants = append(grants, Grant{Elem: ledger.Elem{Client: c, Addr: addr, Port: tcp443WithPort(p)}, Expires: exp})
			}
		}
		if err := n.Allow(context.Background(), grants); err != nil {
			b.Fatal(err)
		}
	}
}

func tcp443WithPort(p uint16) policy.PortRange {
	r := tcp443
	r.Lo, r.Hi = p, p
	return r
}

// BenchmarkAllowBatch is the bulk path: 64 callers at once, one answer of
// four elements each, group-committed by the writer. It reports elements
// installed per second.
func BenchmarkAllowBatch(b *testing.B) {
	labtest.Require(b, "ip", "nft")
	ns := labtest.NS(b, "bench")
	n := openInNS(b, ns, testSpec())
	exp := time.Now().Add(time.Hour)
	var next atomic.Uint64
	start := time.Now()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			grants := make([]Grant, 0, 4)
			for k := range uint64(4) {
				v := i*4 + k
				a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 8: byte(v >> 24), 9: byte(v >> 16), 10: byte(v >> 8), 11: byte(v)})
				grants = append(grants, Grant{Elem: ledger.Elem{Client: client6, Addr: a, Port: tcp443}, Expires: exp})
			}
			if err := n.Allow(context.Background(), grants); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(next.Load()*4)/time.Since(start).Seconds(), "elements/s")
}
