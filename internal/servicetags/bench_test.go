package servicetags

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// publicSize is the size of the public file as of 2026: about 60,000
// prefixes over some 3,000 tags, a fifth of them IPv6.
const (
	publicPrefixes = 60000
	publicTags     = 3000
)

// synthFile makes a file of the public file's size. Its prefixes are
// random (not documentation ranges: nothing is sent anywhere), v4 /16-/32
// and v6 /29-/64, so that the trie is as deep and as wide as the real one.
func synthFile(r *rand.Rand) *File {
	f := &File{Tags: make([]Tag, publicTags)}
	for i := range f.Tags {
		f.Tags[i].Name = fmt.Sprintf("Synth%d.Region%d", i, i%60)
	}
	for i := range publicPrefixes {
		var p netip.Prefix
		if i%5 == 4 {
			var b [16]byte
			b[0], b[1] = 0x20, byte(r.IntN(256))
			for j := 2; j < 8; j++ {
				b[j] = byte(r.IntN(256))
			}
			p = netip.PrefixFrom(netip.AddrFrom16(b), 29+r.IntN(36)).Masked()
		} else {
			var b [4]byte
			for j := range b {
				b[j] = byte(r.IntN(256))
			}
			p = netip.PrefixFrom(netip.AddrFrom4(b), 16+r.IntN(17)).Masked()
		}
		t := &f.Tags[r.IntN(publicTags)]
		t.Prefixes = append(t.Prefixes, p)
	}
	return f
}

// probes are addresses to look up: half inside a prefix of f, half random.
func probes(r *rand.Rand, f *File, n int) []netip.Addr {
	var all []netip.Prefix
	for _, t := range f.Tags {
		all = append(all, t.Prefixes...)
	}
	out := make([]netip.Addr, n)
	for i := range out {
		if i%2 == 0 {
			out[i] = all[r.IntN(len(all))].Addr()
			continue
		}
		var b [4]byte
		for j := range b {
			b[j] = byte(r.IntN(256))
		}
		out[i] = netip.AddrFrom4(b)
	}
	return out
}

// linearScan is the baseline: what a loop over every prefix costs.
func linearScan(all []netip.Prefix, a netip.Addr) bool {
	for _, p := range all {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// BenchmarkLookup60k measures Index.Lookup (the most specific prefix and
// its tags) at the public file's size, and reports it against a linear scan
// of netip.Prefix.Contains over the same prefixes in the same run
// (x-linear: how many times faster the index is).
func BenchmarkLookup60k(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	f := synthFile(r)
	x := NewIndex(f)
	ps := probes(r, f, 4096)
	var all []netip.Prefix
	for _, t := range f.Tags {
		all = append(all, t.Prefixes...)
	}
	// The baseline: a fixed number of scans, timed here rather than as a
	// benchmark of its own, so that both figures come from the same moment
	// of a shared machine.
	const scans = 200
	start := time.Now()
	hits := 0
	for i := range scans {
		if linearScan(all, ps[i%len(ps)]) {
			hits++
		}
	}
	linearPerSec := scans / time.Since(start).Seconds()

	b.ResetTimer()
	start = time.Now()
	for i := 0; b.Loop(); i++ {
		if _, ok := x.Lookup(ps[i%len(ps)]); ok {
			hits++
		}
	}
	perSec := float64(b.N) / time.Since(start).Seconds()
	b.ReportMetric(perSec, "lookups/s")
	b.ReportMetric(perSec/linearPerSec, "x-linear")
	if hits == 0 {
		b.Fatal("no probe was found")
	}
}

// BenchmarkContains60k is the same without building the answer: whether
// any tag holds the address (no allocation).
func BenchmarkContains60k(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	f := synthFile(r)
	x := NewIndex(f)
	ps := probes(r, f, 4096)
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		x.Contains(ps[i%len(ps)])
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "lookups/s")
}
