package monitor

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/dnsproxy"
	"github.com/fqdngate/fqdngate/internal/ledger"
)

func TestClientsSeen(t *testing.T) {
	m := New(ledger.New(ledger.Options{}), Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t0 := time.Unix(1000, 0)
	a, b := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.9")
	for i, q := range []dnsproxy.Outcome{
		{Client: a, Group: "devices", Name: "www.example.com.", Decision: dnsproxy.DecisionAllowed},
		{Client: a, Group: "devices", Name: "evil.example.", Decision: dnsproxy.DecisionDenied},
		{Client: a, Group: "lab", Name: "evil.example.", Decision: dnsproxy.DecisionWouldDeny},
		{Client: b, Name: "x.example.", Decision: dnsproxy.DecisionRefused},
	} {
		q.Time = t0.Add(time.Duration(i) * time.Second)
		m.Query(q)
	}
	got, notKept := m.Clients()
	want := []ClientSeen{
		{Addr: b, Group: "", Queries: 1, First: t0.Add(3 * time.Second), Last: t0.Add(3 * time.Second)},
		{Addr: a, Group: "lab", Queries: 3, Denied: 2, First: t0, Last: t0.Add(2 * time.Second)},
	}
	if notKept != 0 || len(got) != len(want) {
		t.Fatalf("Clients() = %+v, %d", got, notKept)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("client %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestClientsBounded(t *testing.T) {
	m := New(ledger.New(ledger.Options{}), Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c := netip.MustParseAddr("2001:db8::")
	for range maxClients + 5 {
		c = c.Next()
		m.Query(dnsproxy.Outcome{Time: time.Unix(0, 0), Client: c, Name: "a.example.", Decision: dnsproxy.DecisionAllowed})
	}
	got, notKept := m.Clients()
	if len(got) != maxClients || notKept != 5 {
		t.Errorf("kept %d, not kept %d; want %d and 5", len(got), notKept, maxClients)
	}
}
