package ledger

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/policy"
)

// BenchmarkLedgerRecord records one answer of three addresses per op.
func BenchmarkLedgerRecord(b *testing.B) {
	l := New(Options{MaxEntries: 1 << 30, MaxPerName: 256})
	rules, ports := []string{"all"}, []policy.PortRange{tcp443}
	chain := []string{"e1.cdn.bench.example"}
	addrs := make([]netip.Addr, 3)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		setAddrs(addrs, uint32(i))
		l.Record(t0, Answer{Client: devA, Group: "g", Name: "name.bench.example", Chain: chain, Addrs: addrs,
			Rules: rules, Ports: ports, TTL: 20 * time.Second, Expires: t0.Add(time.Minute)})
	}
}

// BenchmarkLedgerBytesPerEntry fills a ledger with 1,000,000 entries
// (distinct addresses, names shared by 4, as a CDN's churn looks) and
// reports the heap each entry costs.
func BenchmarkLedgerBytesPerEntry(b *testing.B) {
	const n = 1_000_000
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		l := New(Options{MaxEntries: 2 * n, MaxPerName: 256})
		rules, ports := []string{"all"}, []policy.PortRange{tcp443}
		chain := []string{"e1.cdn.bench.example"}
		names := make([]string, n/4)
		for i := range names {
			names[i] = "u" + itoa(i) + ".bench.example"
		}
		for i := 0; i < n; i++ {
			v := uint32(i)
			a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 4: byte(v >> 24), 5: byte(v >> 16), 6: byte(v >> 8), 7: byte(v)})
			l.Record(t0, Answer{Client: devA, Group: "g", Name: names[i/4], Chain: chain, Addrs: []netip.Addr{a},
				Rules: rules, Ports: ports, TTL: 20 * time.Second, Expires: t0.Add(time.Minute)})
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if l.Stats().Entries != n {
			b.Fatalf("%d entries", l.Stats().Entries)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/entry")
		runtime.KeepAlive(l)
		runtime.KeepAlive(names)
	}
}

func itoa(i int) string {
	var b [20]byte
	p := len(b)
	for {
		p--
		b[p] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			return string(b[p:])
		}
	}
}

// BenchmarkLedgerRecordUnique is the benchmark's unique-name mix: a new
// name per op, behind one of 100,000 CNAME targets, with three addresses
// of its own, so that every op adds a name, three addresses and their
// entries to a ledger that keeps growing.
func BenchmarkLedgerRecordUnique(b *testing.B) {
	l := New(Options{MaxEntries: 1 << 30, MaxPerName: 256})
	rules, ports := []string{"all"}, []policy.PortRange{tcp443}
	names := make([]string, b.N)
	chains := make([][]string, 100_000)
	for i := range names {
		names[i] = "u" + itoa(i) + ".bench.example"
	}
	for i := range chains {
		chains[i] = []string{"e" + itoa(i) + ".cdn.bench.example"}
	}
	b.ReportAllocs()
	addrs := make([]netip.Addr, 3)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		setAddrs(addrs, uint32(i))
		l.Record(t0, Answer{Client: devA, Group: "g", Name: names[i], Chain: chains[i%len(chains)], Addrs: addrs,
			Rules: rules, Ports: ports, TTL: 20 * time.Second, Expires: t0.Add(time.Minute)})
	}
}

// setAddrs sets out to the v-th answer's addresses in 2001:db8::/32
// (Record copies them, so the benchmarks reuse one slice).
func setAddrs(out []netip.Addr, v uint32) {
	for k := range out {
		out[k] = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 4: byte(v >> 24), 5: byte(v >> 16), 6: byte(v >> 8), 7: byte(v), 15: byte(k + 1)})
	}
}
