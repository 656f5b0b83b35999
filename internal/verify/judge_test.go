package verify

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/monitor"
	"github.com/fqdngate/fqdngate/internal/policy"
)

var (
	t0      = time.Date(2026, 12, 4, 2, 0, 0, 0, time.UTC)
	client  = netip.MustParseAddr("192.0.2.10")
	other   = netip.MustParseAddr("192.0.2.11")
	edge    = netip.MustParseAddr("203.0.113.80")
	edge2   = netip.MustParseAddr("203.0.113.81")
	tcp443  = policy.PortRange{Proto: 6, Lo: 443, Hi: 443}
	errNone error
)

func testLedger() *ledger.Ledger {
	l := ledger.New(ledger.Options{})
	l.Record(t0, ledger.Answer{Client: client, Group: "devices", Name: "prod.update.sphere.azure.net",
		Chain: []string{"prod.update.sphere.azure.net.edgekey.net", "e1234.a.akamaiedge.net"},
		Addrs: []netip.Addr{edge}, Rules: []string{"sphere"}, Ports: []policy.PortRange{tcp443},
		TTL: time.Minute, Expires: t0.Add(time.Minute)})
	l.Record(t0, ledger.Answer{Client: client, Group: "devices", Name: "legacy.example",
		Addrs: []netip.Addr{edge2}, Rules: []string{"legacy"}, Ports: []policy.PortRange{tcp443},
		TTL: time.Minute, Expires: t0.Add(time.Minute)})
	l.Record(t0, ledger.Answer{Client: other, Group: "devices", Name: "other.example",
		Addrs: []netip.Addr{edge}, Rules: []string{"sphere"}, Ports: []policy.PortRange{tcp443},
		TTL: time.Minute, Expires: t0.Add(time.Minute)})
	return l
}

func TestDecide(t *testing.T) {
	j := &Judge{Ledger: testLedger(), HTTPPorts: []uint16{80},
		Verifies: func(group, rule string, port uint16) bool { return rule != "legacy" }}
	tests := []struct {
		name     string
		now      time.Time
		client   netip.Addr
		addr     netip.Addr
		port     uint16
		sent     string
		err      error
		global   bool
		want     monitor.Reason
		answered []string
	}{
		{"answered name", t0, client, edge, 443, "prod.update.sphere.azure.net", errNone, false, monitor.Allowed, nil},
		{"another site on the same edge", t0, client, edge, 443, "www.example.org", errNone, false, monitor.SNIMismatch, []string{"prod.update.sphere.azure.net"}},
		{"a cname target does not count", t0, client, edge, 443, "e1234.a.akamaiedge.net", errNone, false, monitor.SNIMismatch, []string{"prod.update.sphere.azure.net"}},
		{"answered to another client only", t0, client, edge, 443, "other.example", errNone, false, monitor.SNIMismatch, []string{"prod.update.sphere.azure.net"}},
		{"scope global: another client's answer counts", t0, client, edge, 443, "other.example", errNone, true, monitor.Allowed, nil},
		{"answered for another address", t0, client, edge, 443, "legacy.example", errNone, false, monitor.SNIMismatch, []string{"prod.update.sphere.azure.net"}},
		{"expired", t0.Add(2 * time.Minute), client, edge, 443, "prod.update.sphere.azure.net", errNone, false, monitor.SNIMismatch, nil},
		{"no sni", t0, client, edge, 443, "", errNone, false, monitor.SNIMissing, []string{"prod.update.sphere.azure.net"}},
		{"not tls", t0, client, edge, 443, "", ErrNotTLS, false, monitor.NotTLS, []string{"prod.update.sphere.azure.net"}},
		{"incomplete within the bounds", t0, client, edge, 443, "", ErrIncomplete, false, monitor.NotTLS, []string{"prod.update.sphere.azure.net"}},
		{"http host", t0, client, edge, 80, "prod.update.sphere.azure.net", errNone, false, monitor.Allowed, nil},
		{"http host mismatch", t0, client, edge, 80, "www.example.org", errNone, false, monitor.HostMismatch, []string{"prod.update.sphere.azure.net"}},
		{"http no host", t0, client, edge, 80, "", errNone, false, monitor.HostMismatch, []string{"prod.update.sphere.azure.net"}},
		{"not http on 80", t0, client, edge, 80, "", ErrNotHTTP, false, monitor.HostMismatch, []string{"prod.update.sphere.azure.net"}},
		{"verify false rule passes anything", t0, client, edge2, 443, "www.example.org", errNone, false, monitor.Allowed, []string{"legacy.example"}},
		{"verify false rule passes not-tls", t0, client, edge2, 443, "", ErrNotTLS, false, monitor.Allowed, []string{"legacy.example"}},
		// An answered name in bytes that cannot be judged does not pass.
		{"no syn seen", t0, client, edge, 443, "prod.update.sphere.azure.net", ErrNoStart, false, monitor.NotTLS, []string{"prod.update.sphere.azure.net"}},
		{"segments disagree", t0, client, edge, 443, "prod.update.sphere.azure.net", ErrSegmentsDisagree, false, monitor.NotTLS, []string{"prod.update.sphere.azure.net"}},
		{"segments disagree on 80", t0, client, edge, 80, "prod.update.sphere.azure.net", ErrSegmentsDisagree, false, monitor.HostMismatch, []string{"prod.update.sphere.azure.net"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j.Global = tt.global
			v := j.Decide(tt.now, tt.client, tt.addr, tt.port, tt.sent, false, tt.err)
			if v.Reason != tt.want || v.Pass != (tt.want == monitor.Allowed) {
				t.Fatalf("got %s (pass %v: %s), want %s", v.Reason, v.Pass, v.Message, tt.want)
			}
			if tt.answered != nil && !slices.Equal(v.Answered, tt.answered) {
				t.Errorf("answered %v, want %v", v.Answered, tt.answered)
			}
			if v.Sent != tt.sent || v.Message == "" {
				t.Errorf("sent %q, message %q", v.Sent, v.Message)
			}
		})
	}
}

func TestAssembler(t *testing.T) {
	hello := goClientHello(t, "a.example")
	k := FlowKey{netip.MustParseAddrPort("192.0.2.10:40000"), netip.MustParseAddrPort("203.0.113.80:443")}
	inspect := func(_ FlowKey, b []byte) error { _, err := ParseClientHello(b); return err }
	const isn = 0xfffffff0 // the sequence numbers wrap inside the hello
	type seg struct {
		off, end int
		// other: the segment carries other bytes than the hello's
		// (before the hello's start, a segment carries zeros)
		other bool
	}
	tests := []struct {
		name    string
		segs    []seg
		readyAt int // index of the segment after which the flow is ready; -1 never
		ids     int
		wantErr error
	}{
		{"one segment", []seg{{0, len(hello), false}}, 0, 1, nil},
		{"two segments", []seg{{0, 100, false}, {100, len(hello), false}}, 1, 2, nil},
		{"retransmitted first segment", []seg{{0, 100, false}, {0, 100, false}, {100, len(hello), false}}, 2, 3, nil},
		{"overlapping", []seg{{0, 100, false}, {50, 200, false}, {200, len(hello), false}}, 2, 3, nil},
		{"out of order", []seg{{100, len(hello), false}, {0, 100, false}}, 1, 2, nil},
		{"three segments", []seg{{0, 5, false}, {5, 10, false}, {10, len(hello), false}}, 2, 3, nil},
		{"never whole", []seg{{0, 10, false}, {10, 20, false}}, -1, 0, nil},
		// What the server keeps of two versions is not what was judged:
		// the flow is judged on the disagreement.
		{"a retransmission with other bytes", []seg{{0, 100, false}, {0, 100, true}}, 1, 2, ErrSegmentsDisagree},
		{"a later, longer segment over an earlier one", []seg{{100, 150, false}, {100, 300, true}}, 1, 2, ErrSegmentsDisagree},
		{"bytes before the flow's start are not the stream's", []seg{{-10, 100, false}, {100, len(hello), false}}, 1, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAssembler(inspect)
			if _, ok := a.Start(t0, k, isn); !ok {
				t.Fatal("no room for a start")
			}
			for i, s := range tt.segs {
				data := make([]byte, s.end-s.off)
				for j := range data {
					if o := s.off + j; o >= 0 {
						data[j] = hello[o]
					}
					if s.other {
						data[j] ^= 0x5a
					}
				}
				r, out := a.Add(t0, k, packetID{id: uint32(i + 1)}, isn+uint32(s.off), data)
				if (out == Judged) != (i == tt.readyAt) || out == NoRoom {
					t.Fatalf("segment %d: %v", i, out)
				}
				if out == Judged && (r.Err != tt.wantErr || len(r.IDs) != tt.ids) {
					t.Fatalf("ready: err %v ids %v", r.Err, r.IDs)
				}
			}
			if tt.readyAt < 0 {
				if a.Held() != 1 || len(a.Expire(t0.Add(MaxWait-time.Millisecond))) != 0 {
					t.Fatal("expired before MaxWait")
				}
				got := a.Expire(t0.Add(MaxWait))
				if len(got) != 1 || got[0].Err != ErrIncomplete || len(got[0].IDs) != len(tt.segs) || a.Held() != 0 {
					t.Fatalf("expire: %+v", got)
				}
			}
			if a.Held() != 0 || a.Starts() != 0 {
				t.Errorf("a judged flow leaves %d held, %d starts", a.Held(), a.Starts())
			}
		})
	}
}

// TestAssemblerStarts: only a flow whose SYN was seen is put together;
// its start outlives MaxWait (a client may open a connection and write
// later), not StartWait; a SYN on a 4-tuple starts another flow and
// gives back the packets held for the one before.
func TestAssemblerStarts(t *testing.T) {
	k := FlowKey{netip.MustParseAddrPort("192.0.2.10:40000"), netip.MustParseAddrPort("203.0.113.80:443")}
	incomplete := func(FlowKey, []byte) error { return ErrIncomplete }
	a := NewAssembler(incomplete)
	if r, out := a.Add(t0, k, packetID{id: 1}, 1000, []byte("\x16\x03\x01")); out != Judged || r.Err != ErrNoStart || len(r.IDs) != 1 {
		t.Fatalf("no SYN seen: %v %+v, want judged on ErrNoStart", out, r)
	}
	a.Start(t0, k, 1000)
	a.Expire(t0.Add(StartWait - time.Second))
	if _, out := a.Add(t0.Add(StartWait-time.Second), k, packetID{id: 2}, 1000, []byte{0x16}); out != Holding {
		t.Fatalf("first bytes %s after the SYN: %v, want held", StartWait-time.Second, out)
	}
	held, ok := a.Start(t0.Add(StartWait), k, 5000)
	if !ok || len(held) != 1 || held[0].id != 2 || a.Held() != 0 || a.Starts() != 1 {
		t.Fatalf("a new SYN on the 4-tuple: held %v, ok %v; %d held, %d starts", held, ok, a.Held(), a.Starts())
	}
	a.Expire(t0.Add(2 * StartWait))
	if a.Starts() != 0 || len(a.clients) != 0 {
		t.Fatalf("after StartWait without a byte: %d starts, %d clients", a.Starts(), len(a.clients))
	}
	if _, out := a.Add(t0.Add(2*StartWait), k, packetID{id: 3}, 5000, []byte{0x16}); out != Judged {
		t.Fatalf("bytes after the start was forgotten: %v, want judged (ErrNoStart)", out)
	}
}

func TestAssemblerBounds(t *testing.T) {
	k := FlowKey{netip.MustParseAddrPort("192.0.2.10:40000"), netip.MustParseAddrPort("203.0.113.80:443")}
	incomplete := func(FlowKey, []byte) error { return ErrIncomplete }
	a := NewAssembler(incomplete)
	a.Start(t0, k, 0)
	for i := range MaxSegments {
		r, out := a.Add(t0, k, packetID{id: uint32(i)}, uint32(i), []byte{1})
		if (out == Judged) != (i == MaxSegments-1) {
			t.Fatalf("segment %d: %v", i, out)
		}
		if out == Judged && (r.Err != ErrIncomplete || len(r.IDs) != MaxSegments) {
			t.Fatalf("%+v", r)
		}
	}
	a = NewAssembler(incomplete)
	a.Start(t0, k, 0)
	if _, out := a.Add(t0, k, packetID{id: 1}, 0, make([]byte, MaxHelloBytes)); out != Judged {
		t.Fatal("a flow at the byte bound is held")
	}

	// One client: MaxFlowsPerClient held, MaxStartsPerClient started.
	a = NewAssembler(incomplete)
	flow := func(c netip.Addr, i int) FlowKey {
		return FlowKey{netip.AddrPortFrom(c, uint16(1024+i)), k.Dst}
	}
	for i := range MaxStartsPerClient {
		if _, ok := a.Start(t0, flow(client, i), 0); !ok {
			t.Fatalf("start %d refused", i)
		}
	}
	if _, ok := a.Start(t0, flow(client, MaxStartsPerClient), 0); ok {
		t.Fatalf("a start beyond MaxStartsPerClient (%d) taken", MaxStartsPerClient)
	}
	if _, ok := a.Start(t0, flow(other, 0), 0); !ok {
		t.Fatal("another client's start refused")
	}
	for i := range MaxFlowsPerClient {
		if _, out := a.Add(t0, flow(client, i), packetID{id: uint32(i)}, 0, []byte{1}); out != Holding {
			t.Fatalf("flow %d: %v", i, out)
		}
	}
	if _, out := a.Add(t0, flow(client, MaxFlowsPerClient), packetID{id: 999}, 0, []byte{1}); out != NoRoom {
		t.Fatalf("a flow beyond MaxFlowsPerClient: %v, want NoRoom", out)
	}
	if _, out := a.Add(t0, flow(other, 0), packetID{id: 1000}, 0, []byte{1}); out != Holding {
		t.Fatalf("another client's flow: %v, want held", out)
	}

	// All clients: MaxFlows held.
	a = NewAssembler(incomplete)
	n := 0
	for c := 0; n < MaxFlows; c++ {
		addr := netip.AddrFrom4([4]byte{198, 51, 100, byte(c)})
		for i := 0; i < MaxFlowsPerClient && n < MaxFlows; i, n = i+1, n+1 {
			a.Start(t0, flow(addr, i), 0)
			if _, out := a.Add(t0, flow(addr, i), packetID{id: uint32(n)}, 0, []byte{1}); out != Holding {
				t.Fatalf("flow %d: %v", n, out)
			}
		}
	}
	a.Start(t0, flow(other, 0), 0)
	if _, out := a.Add(t0, flow(other, 0), packetID{id: 99}, 0, []byte{1}); out != NoRoom || a.Held() != MaxFlows {
		t.Fatalf("a flow beyond MaxFlows: %v, held %d", out, a.Held())
	}
}

// TestAssemblerStartsBound: past MaxStarts the oldest start is
// forgotten (its flow is judged on ErrNoStart when it sends), not the
// new one refused; an IPv6 client's bound is its /64's; a SYN with
// another first sequence number leaves the flow judged on ErrTwoStarts.
func TestAssemblerStartsBound(t *testing.T) {
	incomplete := func(FlowKey, []byte) error { return ErrIncomplete }
	dst := netip.MustParseAddrPort("203.0.113.80:443")
	flow := func(c netip.Addr, i int) FlowKey { return FlowKey{netip.AddrPortFrom(c, uint16(1024+i)), dst} }

	a := NewAssembler(incomplete)
	var first FlowKey
	for n, c := 0, 0; n < MaxStarts; c++ {
		addr := netip.AddrFrom4([4]byte{198, 51, 100, byte(c)})
		for i := 0; i < MaxStartsPerClient && n < MaxStarts; i, n = i+1, n+1 {
			k := flow(addr, i)
			if n == 0 {
				first = k
			}
			if _, ok := a.Start(t0, k, 0); !ok {
				t.Fatalf("start %d refused", n)
			}
		}
	}
	if _, ok := a.Start(t0, flow(client, 0), 0); !ok || a.Starts() != MaxStarts {
		t.Fatalf("a start beyond MaxStarts: ok %v, %d starts", ok, a.Starts())
	}
	if r, out := a.Add(t0, first, packetID{id: 1}, 0, []byte{1}); out != Judged || r.Err != ErrNoStart {
		t.Fatalf("the oldest flow after it was forgotten: %v %v", out, r.Err)
	}
	// Starts judged and forgotten leave slots in the ring; it never
	// fills with them.
	for i := range 3 * MaxStarts {
		k := flow(other, i%1000)
		a.Start(t0, k, 0)
		a.Forget(k)
	}
	if a.size > len(a.order) || a.Starts() != MaxStarts-1 {
		t.Fatalf("ring %d of %d, %d starts", a.size, len(a.order), a.Starts())
	}

	a = NewAssembler(incomplete)
	for i := range MaxStartsPerClient {
		host := netip.MustParseAddr("2001:db8:1::a")
		if i%2 == 1 {
			host = netip.MustParseAddr("2001:db8:1::b")
		}
		if _, ok := a.Start(t0, flow(host, i), 0); !ok {
			t.Fatalf("start %d refused", i)
		}
	}
	if _, ok := a.Start(t0, flow(netip.MustParseAddr("2001:db8:1::c"), 0), 0); ok {
		t.Fatal("a third address of the same /64 beyond the bound was taken")
	}
	if _, ok := a.Start(t0, flow(netip.MustParseAddr("2001:db8:2::a"), 0), 0); !ok {
		t.Fatal("another /64 refused")
	}

	a = NewAssembler(incomplete)
	k := flow(client, 0)
	a.Start(t0, k, 1001)
	if _, ok := a.AnotherSYN(k, 1000); ok {
		t.Fatal("the SYN sent again (the same sequence number) judged the flow")
	}
	if _, out := a.Add(t0, k, packetID{id: 1}, 1001, []byte{1}); out != Holding {
		t.Fatalf("after the SYN sent again: %v, want held", out)
	}
	if r, ok := a.AnotherSYN(k, 5000); !ok || r.Err != ErrTwoStarts || len(r.IDs) != 1 {
		t.Fatalf("a SYN with another sequence number while bytes are held: %v %+v", ok, r)
	}
	a.Start(t0, k, 1001)
	a.AnotherSYN(k, 5000)
	if r, out := a.Add(t0, k, packetID{id: 2}, 1001, []byte{1}); out != Judged || r.Err != ErrTwoStarts {
		t.Fatalf("bytes after a SYN with another sequence number: %v %v", out, r.Err)
	}
	if a.Starts() != 0 || a.Held() != 0 || len(a.clients) != 0 {
		t.Fatalf("left: %d starts, %d held, %d clients", a.Starts(), a.Held(), len(a.clients))
	}
}
