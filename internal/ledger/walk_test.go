package ledger

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestWalkLive(t *testing.T) {
	l := New(Options{MaxEntries: 1 << 20})
	// More than two chunks, so that the walk lets go of the lock; entry i
	// expires i seconds after t0, odd ones belong to group "h".
	const n = 2*selectChunk + 50
	for i := range n {
		a := answer(devA, fmt.Sprintf("n%d.example.com", i), t0.Add(time.Duration(i+1)*time.Second),
			netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}).String())
		if i%2 == 1 {
			a.Group, a.Rules = "h", []string{"r2"}
		}
		l.Record(t0, a)
	}
	tests := []struct {
		name  string
		now   time.Time
		group string
		want  int
	}{
		{"all of g", t0, "g", n / 2},
		{"all of h", t0, "h", n / 2},
		{"expired ones left out", t0.Add(100 * time.Second), "g", (n - 100) / 2},
		{"unknown group", t0, "nobody", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []LiveAddr
			l.WalkLive(tc.now, tc.group, func(a LiveAddr) { got = append(got, a) })
			if len(got) != tc.want {
				t.Fatalf("%d addresses, want %d", len(got), tc.want)
			}
			wantRule := map[string]string{"g": "r", "h": "r2"}[tc.group]
			for _, a := range got {
				if !a.Expires.After(tc.now) || !slices.Equal(a.Rules, []string{wantRule}) {
					t.Fatalf("%+v: not live at %v or not of group %s", a, tc.now, tc.group)
				}
			}
		})
	}
}
