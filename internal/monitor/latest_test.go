package monitor

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fqdngate/fqdngate/internal/enforce"
	"github.com/fqdngate/fqdngate/internal/ledger"
)

// TestExplainLatest: without a port, the explanation carries the
// client's latest drop for the address (here on a port the rule does not
// have, past the sampling budget) beside what is open now.
func TestExplainLatest(t *testing.T) {
	now := t0
	led := ledger.New(ledger.Options{})
	m := New(led, Options{Now: func() time.Time { return now }}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	led.Record(now, answer(devA, "www.example.com", time.Minute, now))
	// Spend the sampling budget: the drop below is counted, not sampled.
	for range samplesBurst + 1 {
		m.Attribute(now, enforce.PrefixDrop, Packet{Src: devB, Dst: netip.MustParseAddr("198.51.100.9"), Proto: unix.IPPROTO_TCP, Port: 443})
	}
	tests := []struct {
		name    string
		pkts    []Packet
		client  netip.Addr
		reason  Reason // of the latest drop; "" for none
		port    string
		current Reason
	}{
		{"no drop yet", nil, devA, "", "", Allowed},
		{"port drop, then the address is open", []Packet{{Src: devA, Dst: cdnAddr, Proto: unix.IPPROTO_TCP, Port: 8443}}, devA, WrongPort, "tcp/8443", Allowed},
		{"whoever got it: the same client", nil, netip.Addr{}, WrongPort, "tcp/8443", Allowed},
		{"the latest of two", []Packet{{Src: devA, Dst: cdnAddr, Proto: unix.IPPROTO_UDP, Port: 443}}, devA, WrongPort, "udp/443", Allowed},
		{"another client's drop", []Packet{{Src: devB, Dst: cdnAddr, Proto: unix.IPPROTO_TCP, Port: 443}}, devB, OtherClient, "tcp/443", OtherClient},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now = now.Add(time.Second)
			for _, p := range tc.pkts {
				m.Attribute(now, enforce.PrefixDrop, p)
			}
			ex, d := m.ExplainLatest(tc.client, cdnAddr)
			if ex.Reason != tc.current {
				t.Errorf("now: %s (%s), want %s", ex.Reason, ex.Message, tc.current)
			}
			if tc.reason == "" {
				if d != nil {
					t.Errorf("latest drop %+v, want none", d)
				}
				return
			}
			if d == nil || d.Reason != tc.reason || d.Port != tc.port || d.Time.IsZero() || d.Message == "" {
				t.Fatalf("latest drop %+v, want %s on %s", d, tc.reason, tc.port)
			}
		})
	}
}

func TestLatestDropsBounded(t *testing.T) {
	l := NewLatestDrops(3)
	for i := range 5 {
		a := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
		l.Add(t0.Add(time.Duration(i)*time.Second), false, Explanation{Reason: NeverResolved, Client: devA, Addr: a})
	}
	// Refreshing the oldest kept pair keeps it past the next eviction.
	l.Add(t0.Add(time.Minute), false, Explanation{Reason: NeverResolved, Client: devA, Addr: netip.MustParseAddr("203.0.113.2")})
	l.Add(t0.Add(time.Minute), false, Explanation{Reason: NeverResolved, Client: devA, Addr: netip.MustParseAddr("203.0.113.9")})
	if l.Len() != 3 {
		t.Errorf("%d pairs, want 3", l.Len())
	}
	for _, tc := range []struct {
		addr string
		kept bool
	}{{"203.0.113.0", false}, {"203.0.113.1", false}, {"203.0.113.2", true}, {"203.0.113.3", false}, {"203.0.113.4", true}, {"203.0.113.9", true}} {
		if _, ok := l.Get(devA, netip.MustParseAddr(tc.addr)); ok != tc.kept {
			t.Errorf("%s kept %v, want %v", tc.addr, ok, tc.kept)
		}
	}
	if _, ok := l.Get(devB, netip.MustParseAddr("203.0.113.9")); ok {
		t.Error("a drop of A found for B")
	}
}

// BenchmarkLatestDropsAdd: the cost the record adds to every attributed
// drop, over more pairs than it keeps.
func BenchmarkLatestDropsAdd(b *testing.B) {
	l := NewLatestDrops(latestDropsMax)
	ex := Explanation{Reason: NeverResolved, Client: devA, Message: "192.0.2.10 never got 203.0.113.7 from fqdngate"}
	i := 0
	for b.Loop() {
		ex.Addr = netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)})
		l.Add(t0, false, ex)
		i = (i + 1) % (2 * latestDropsMax)
	}
}
