package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"testing"
	"time"
)

// lagKernel records when each record arrived, for the replication lag.
type lagKernel struct {
	mu   sync.Mutex
	lags []time.Duration
	want int
	done chan struct{}
}

func (k *lagKernel) Apply(_ context.Context, recs []Record) []Verdict {
	now := time.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, r := range recs {
		k.lags = append(k.lags, now.Sub(r.Learnt))
	}
	if len(k.lags) >= k.want && k.done != nil {
		close(k.done)
		k.done = nil
	}
	return make([]Verdict, len(recs))
}

// BenchmarkReplication: records published on gw1 at a steady rate (2,000
// a second, as in the issue) and applied on gw2, over loopback between
// two embedded servers; the kernel is left out (bench/cluster.sh measures
// it in the HA lab). Reports the lag's p50 and p99.
func BenchmarkReplication(b *testing.B) {
	s := newSite(b, "gw1", "gw2")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	k2 := &lagKernel{want: b.N, done: make(chan struct{})}
	n1, err := Start(context.Background(), s.config("gw1"), &lagKernel{}, log)
	if err != nil {
		b.Fatal(err)
	}
	defer n1.Close()
	n2, err := Start(context.Background(), s.config("gw2"), k2, log)
	if err != nil {
		b.Fatal(err)
	}
	defer n2.Close()
	for ok, _ := n2.Ready(); !ok; ok, _ = n2.Ready() {
		time.Sleep(10 * time.Millisecond)
	}
	done := k2.done
	tick := time.NewTicker(time.Millisecond) // 2 per tick: 2,000/s
	defer tick.Stop()
	exp := time.Now().Add(time.Hour)
	b.ResetTimer()
	for i := 0; i < b.N; i += 2 {
		<-tick.C
		for j := range 2 {
			r := Record{Node: "gw1", Client: netip.MustParseAddr("192.0.2.10"), Name: fmt.Sprintf("n%d.example", i+j),
				Addr: netip.MustParseAddr("198.51.100.1"), TTL: time.Minute, Learnt: time.Now(), Expires: exp}
			n1.Publish(r)
		}
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		b.Fatalf("gw2 applied %d of %d", len(k2.lags), b.N)
	}
	b.StopTimer()
	k2.mu.Lock()
	defer k2.mu.Unlock()
	sort.Slice(k2.lags, func(i, j int) bool { return k2.lags[i] < k2.lags[j] })
	q := func(p float64) float64 { return float64(k2.lags[int(p*float64(len(k2.lags)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}
