// Package gcfloor keeps the Go collector from running while the heap is
// small. With GOGC's default a collection starts when the heap has grown
// to twice what the last one left live, so a gateway with a small ledger
// collects every few megabytes of garbage, each cycle holding the CPU
// while queries wait. Holding the next collection back to a heap of 64 MiB
// trades memory (a higher peak RSS) for those pauses; bench/README.md has
// the figures. A heap past half the floor collects as GOGC says.
package gcfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// Default is the floor fqdngate runs with. It costs up to some 60 MB more
// memory, and only a gateway whose live heap is under half of it.
const Default = 64 << 20

// Start raises GOGC after every collection, when the heap left live is
// small, so that the next collection starts at a heap of floor bytes
// rather than at twice the live heap; it never sets less than the GOGC in
// force at the start. A memory limit (GOMEMLIMIT) still takes precedence.
// Start does nothing when GOGC is set in the environment: the operator
// chose. The function it returns stops it and restores that GOGC.
func Start(floor uint64) (stop func()) {
	if _, set := os.LookupEnv("GOGC"); set || floor == 0 {
		return func() {}
	}
	base := int(read("/gc/gogc:percent"))
	if base <= 0 {
		return func() {} // collection off: nothing to hold back
	}
	t := &tuner{floor: floor, base: base}
	t.apply()
	t.arm()
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if !t.stopped {
			t.stopped = true
			debug.SetGCPercent(base)
		}
	}
}

type tuner struct {
	floor uint64
	base  int
	// mu orders apply and stop: no GOGC is set after stop restored it.
	mu      sync.Mutex
	stopped bool
}

// sentinel is large enough not to share a tiny-allocator block, whose
// other objects could keep it alive past a collection.
type sentinel struct{ _ [32]byte }

// arm runs apply after the next collection: the cleanup of an object
// nothing refers to runs once a collection has found it unreachable.
func (t *tuner) arm() {
	runtime.AddCleanup(new(sentinel), func(t *tuner) {
		if t.apply() {
			t.arm()
		}
	}, t)
}

// apply sets GOGC for the heap the last collection left live; false once
// stopped.
func (t *tuner) apply() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	debug.SetGCPercent(Percent(read("/gc/heap/live:bytes"), t.floor, t.base))
	return true
}

// Percent is the GOGC that starts the next collection at a heap of floor
// bytes when live bytes are live, and base when that is more.
func Percent(live, floor uint64, base int) int {
	if live == 0 || live >= floor {
		return base
	}
	return max(base, int(floor*100/live)-100)
}

func read(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
