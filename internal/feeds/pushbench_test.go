package feeds

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/feeds/feedstest"
	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// BenchmarkPushLag offers 2,000 answers a second (one new address each)
// to a PAN-OS target with the default batching (50 ms, 500 addresses)
// against the fake XML API over TLS on loopback, and reports the lag from
// the offer to the firewall's acknowledgement: the DESIGN section 12
// target is p99 ≤ 250 ms. Each iteration is one second of answers.
func BenchmarkPushLag(b *testing.B) {
	for _, typ := range []string{"panos", "fortigate"} {
		b.Run(typ, func(b *testing.B) {
			var h http.Handler = feedstest.NewPANOS("k")
			if typ == "fortigate" {
				h = feedstest.NewFortiGate("k", "fqdngate-sphere-hub")
			}
			srv := httptest.NewTLSServer(h)
			defer srv.Close()
			pol := testPolicy(b)
			p, err := NewPusher(PushOptions{Type: typ, URL: srv.URL, Key: "k", RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs,
				Tag: "fqdngate-{client}-{rule}", Label: typ + "-0", Ledger: ledger.New(ledger.Options{}), Policy: func() *policy.Policy { return pol }})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); p.Run(ctx) }()
			defer func() { cancel(); <-done }()
			for p.Stats().Resyncs.Load() == 0 {
				time.Sleep(time.Millisecond)
			}
			const rate = 2000
			var lags []time.Duration
			n := 0
			b.ResetTimer()
			for b.Loop() {
				acks := make(chan time.Duration, rate)
				start := time.Now()
				for i := range rate {
					// On a schedule, not a ticker: a late tick does not
					// lower the rate, the next answers catch up.
					if d := time.Until(start.Add(time.Duration(i) * time.Second / rate)); d > 0 {
						time.Sleep(d)
					}
					n++
					a := &ledger.Answer{Group: "sphere", Rules: []string{"hub"}, Expires: time.Now().Add(time.Minute),
						Addrs: []netip.Addr{netip.AddrFrom4([4]byte{203, 0, byte(n >> 8), byte(n)})}}
					at := time.Now()
					ch, err := p.OfferHold(a)
					if err != nil {
						b.Fatal(err)
					}
					go func() {
						if err := <-ch; err != nil {
							b.Error(err)
						}
						acks <- time.Since(at)
					}()
				}
				for range rate {
					lags = append(lags, <-acks)
				}
			}
			b.StopTimer()
			slices.Sort(lags)
			b.ReportMetric(float64(lags[len(lags)/2])/1e6, "p50-ms")
			b.ReportMetric(float64(lags[len(lags)*99/100])/1e6, "p99-ms")
			b.ReportMetric(float64(p.Stats().Batches.Load())/float64(b.N), "requests/s")
		})
	}
}
