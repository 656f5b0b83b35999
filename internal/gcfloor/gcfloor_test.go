package gcfloor

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name        string
		live, floor uint64
		base, want  int
	}{
		{"small heap: next collection at the floor", 16 * mib, 64 * mib, 100, 300},
		{"tiny heap", 1 * mib, 64 * mib, 100, 6300},
		{"half the floor: GOGC as it is", 32 * mib, 64 * mib, 100, 100},
		{"past the floor", 200 * mib, 64 * mib, 100, 100},
		{"a higher GOGC is kept", 16 * mib, 64 * mib, 400, 400},
		{"nothing live yet", 0, 64 * mib, 100, 100},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Percent(c.live, c.floor, c.base); got != c.want {
				t.Fatalf("Percent(%d, %d, %d) = %d, want %d", c.live, c.floor, c.base, got, c.want)
			}
		})
	}
}

// TestStart: after collections, GOGC is raised for the small heap of a
// test binary; stop restores it; with GOGC in the environment nothing
// changes.
func TestStart(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	t.Run("raises GOGC after every collection, stop restores it", func(t *testing.T) {
		stop := Start(1 << 30)
		// Set back by hand, GOGC must be raised again by the next
		// collection, and the one after: the tuner re-arms itself.
		for cycle := range 3 {
			debug.SetGCPercent(100)
			deadline := time.Now().Add(10 * time.Second)
			for read("/gc/gogc:percent") <= 100 {
				if time.Now().After(deadline) {
					stop()
					t.Fatalf("cycle %d: GOGC still %d after collections", cycle, read("/gc/gogc:percent"))
				}
				runtime.GC()
				time.Sleep(10 * time.Millisecond) // the cleanup runs on its own goroutine
			}
		}
		stop()
		if got := read("/gc/gogc:percent"); got != 100 {
			t.Fatalf("GOGC %d after stop, want 100", got)
		}
		runtime.GC()
		time.Sleep(50 * time.Millisecond)
		if got := read("/gc/gogc:percent"); got != 100 {
			t.Fatalf("GOGC %d after a collection past stop, want 100", got)
		}
	})
	t.Run("GOGC in the environment: left alone", func(t *testing.T) {
		t.Setenv("GOGC", "100")
		stop := Start(1 << 30)
		defer stop()
		runtime.GC()
		runtime.GC()
		time.Sleep(50 * time.Millisecond)
		if got := read("/gc/gogc:percent"); got != 100 {
			t.Fatalf("GOGC %d, want 100 as the environment says", got)
		}
	})
}
