package ledger

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func TestSelect(t *testing.T) {
	l := New(Options{MaxEntries: 1 << 20})
	// More entries than one chunk of the scan, so that the scan lets go
	// of the lock at least twice; name i expires i seconds after t0.
	const n = 2*selectChunk + 100
	for i := range n {
		client := devA
		if i%2 == 1 {
			client = devB
		}
		addr := netip.AddrFrom4([4]byte{203, 0, 113, byte(i % 200)})
		l.Record(t0, answer(client, fmt.Sprintf("n%d.example.com", i), t0.Add(time.Duration(i)*time.Second), addr.String()))
	}
	tests := []struct {
		name  string
		f     Filter
		limit int
		first string // name of the first entry returned
		count int
		more  bool
	}{
		{"everything, newest first", Filter{}, 3, fmt.Sprintf("n%d.example.com", n-1), 3, true},
		{"all of them", Filter{}, n, fmt.Sprintf("n%d.example.com", n-1), n, false},
		{"one client", Filter{Client: devA}, 2, fmt.Sprintf("n%d.example.com", n-2), 2, true},
		{"by name across clients", Filter{Name: "n7.example.com"}, 10, "n7.example.com", 1, false},
		{"client and name", Filter{Client: devB, Name: "n7.example.com"}, 10, "n7.example.com", 1, false},
		{"client and name of another client", Filter{Client: devA, Name: "n7.example.com"}, 10, "", 0, false},
		{"by address", Filter{Addr: netip.MustParseAddr("203.0.113.7")}, 5, fmt.Sprintf("n%d.example.com", 7+200*((n-1-7)/200)), 5, true},
		{"unknown client", Filter{Client: netip.MustParseAddr("192.0.2.99")}, 10, "", 0, false},
		{"unknown name", Filter{Name: "nothing.example.com"}, 10, "", 0, false},
		{"zero limit", Filter{}, 0, "", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, more := l.Select(tc.f, tc.limit)
			if len(got) != tc.count || more != tc.more {
				t.Fatalf("%d entries, more %v; want %d, more %v", len(got), more, tc.count, tc.more)
			}
			if tc.count > 0 && got[0].Name != tc.first {
				t.Errorf("first = %s, want %s", got[0].Name, tc.first)
			}
			for i := 1; i < len(got); i++ {
				if got[i].Expires.After(got[i-1].Expires) {
					t.Fatalf("entry %d expires after entry %d: not newest first", i, i-1)
				}
			}
			for _, e := range got {
				if (tc.f.Client.IsValid() && e.Client != tc.f.Client) || (tc.f.Name != "" && e.Name != tc.f.Name) ||
					(tc.f.Addr.IsValid() && e.Addr != tc.f.Addr) {
					t.Fatalf("%+v does not match %+v", e, tc.f)
				}
			}
		})
	}
}

func TestWithdraw(t *testing.T) {
	l := New(Options{})
	exp := t0.Add(time.Minute)
	l.Record(t0, answer(devA, "x.example.com", exp, "203.0.113.1", "203.0.113.2"))
	// devA holds 203.0.113.2 through another name too, and devB holds
	// 203.0.113.1 for the same name: neither may be withdrawn.
	l.Record(t0, answer(devA, "y.example.com", exp, "203.0.113.2"))
	l.Record(t0, answer(devB, "x.example.com", exp, "203.0.113.1"))

	revoke := l.Withdraw(t0, devA, "x.example.com")
	want := map[Elem]bool{
		{Client: devA, Addr: netip.MustParseAddr("203.0.113.1"), Port: tcp443}:  true,
		{Client: devA, Addr: netip.MustParseAddr("203.0.113.1"), Port: tcp8883}: true,
	}
	if len(revoke) != len(want) {
		t.Fatalf("revoke = %v, want %v", revoke, want)
	}
	for _, e := range revoke {
		if !want[e] {
			t.Errorf("revoked %v, which another entry still covers", e)
		}
	}
	if got, _ := l.Select(Filter{Client: devA, Name: "x.example.com"}, 10); len(got) != 0 {
		t.Errorf("entries left for the withdrawn name: %v", got)
	}
	if got, _ := l.Select(Filter{Client: devB}, 10); len(got) != 1 {
		t.Errorf("devB's entries = %v, want its one", got)
	}
	if got := l.Withdraw(t0, devA, "never.example.com"); got != nil {
		t.Errorf("withdraw of an unknown name = %v", got)
	}
	checkInvariants(t, l)
}
