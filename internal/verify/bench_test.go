package verify

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// BenchmarkParseClientHello is the parse of one Go crypto/tls
// ClientHello (hybrid post-quantum key share, about 1.5 kB).
func BenchmarkParseClientHello(b *testing.B) {
	hello := goClientHello(b, "prod.update.sphere.azure.net")
	b.SetBytes(int64(len(hello)))
	for b.Loop() {
		if _, err := ParseClientHello(hello); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerdict is a new verified flow in userspace: a ClientHello
// in two segments put together, parsed and judged against a ledger of
// 10,000 clients with 10 names each on shared addresses.
func BenchmarkVerdict(b *testing.B) {
	l := ledger.New(ledger.Options{MaxEntries: 1 << 20})
	tcp := []policy.PortRange{{Proto: 6, Lo: 443, Hi: 443}}
	for c := range 10000 {
		cl := netip.AddrFrom4([4]byte{10, byte(c >> 8), byte(c), 1})
		for n := range 10 {
			l.Record(t0, ledger.Answer{Client: cl, Group: "g", Name: fmt.Sprintf("n%d.example.com", n),
				Addrs: []netip.Addr{netip.AddrFrom4([4]byte{203, 0, 113, byte(n)})}, Rules: []string{"r"}, Ports: tcp,
				TTL: time.Hour, Expires: t0.Add(time.Hour)})
		}
	}
	j := &Judge{Ledger: l, HTTPPorts: []uint16{80}}
	hello := goClientHello(b, "n3.example.com")
	asm := NewAssembler(func(k FlowKey, p []byte) error { _, _, err := j.Inspect(k.Dst.Port(), p); return err })
	dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, 3}), 443)
	i := 0
	for b.Loop() {
		i++
		k := FlowKey{netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8 % 39), byte(i), 1}), uint16(i)), dst}
		asm.Start(t0, k, 1000)
		asm.Add(t0, k, packetID{id: 1}, 1000, hello[:1000])
		r, out := asm.Add(t0, k, packetID{id: 2}, 2000, hello[1000:])
		if out != Judged {
			b.Fatal("not ready")
		}
		name, ech, _ := j.Inspect(443, r.Stream)
		if v := j.Decide(t0, k.Src.Addr(), dst.Addr(), 443, name, ech, r.Err); !v.Pass {
			b.Fatal(v.Message)
		}
	}
}
