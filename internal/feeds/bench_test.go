package feeds

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// BenchmarkFeedIP100k renders the ip feed of a group with 100,000 live
// addresses (1,000 devices, 100 names each, one address per name), among
// another group's 20,000: the DESIGN section 12 target is 100 ms.
func BenchmarkFeedIP100k(b *testing.B) {
	l := ledger.New(ledger.Options{MaxEntries: 1 << 18})
	ports := []policy.PortRange{{Proto: policy.ProtoTCP, Lo: 443, Hi: 443}}
	n := 0
	for dev := range 1200 {
		group := "sphere"
		if dev >= 1000 {
			group = "cams"
		}
		client := netip.AddrFrom4([4]byte{192, 0, 2, byte(dev % 250)})
		if dev >= 250 {
			client = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(dev >> 8), byte(dev)})
		}
		for name := range 100 {
			addr := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 1, 0, 0, 0, 0, 0, 0, 0, 0, byte(n >> 16), byte(n >> 8), byte(n)})
			n++
			l.Record(t0, ledger.Answer{Client: client, Group: group, Name: fmt.Sprintf("n%d.example.com", name), Addrs: []netip.Addr{addr},
				Rules: []string{"hub"}, Ports: ports, TTL: time.Minute, Expires: t0.Add(time.Hour)})
		}
	}
	pol := testPolicy(b)
	p := NewPull(PullOptions{Ledger: l, Policy: func() *policy.Policy { return pol }, Now: func() time.Time { return t0 },
		Tokens: []Token{{Name: "pan", Secret: "s", Feeds: []string{FeedIP}, Clients: []string{"sphere"}}}})
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := get(p, "/feeds/v1/ip?client=sphere", "s")
		if w.Code != 200 || w.Body.Len() < 100000*10 {
			b.Fatalf("status %d, %d bytes", w.Code, w.Body.Len())
		}
	}
}
