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
	}
	tests := []struct {
		name    string
		start   bool
		segs    []seg
		readyAt int // index of the segment after which the flow is ready; -1 never
		ids     int
		wantErr error
	}{
		{"one segment", false, []seg{{0, len(hello)}}, 0, 1, nil},
		{"two segments", false, []seg{{0, 100}, {100, len(hello)}}, 1, 2, nil},
		{"retransmitted first segment", false, []seg{{0, 100}, {0, 100}, {100, len(hello)}}, 2, 3, nil},
		{"overlapping", false, []seg{{0, 100}, {50, 200}, {200, len(hello)}}, 2, 3, nil},
		{"out of order after the handshake ack", true, []seg{{100, len(hello)}, {0, 100}}, 1, 2, nil},
		{"out of order, no handshake ack seen", false, []seg{{100, len(hello)}, {0, 100}}, 0, 1, ErrNotTLS},
		{"two segments after the handshake ack", true, []seg{{0, 100}, {100, len(hello)}}, 1, 2, nil},
		{"three segments", false, []seg{{0, 5}, {5, 10}, {10, len(hello)}}, 2, 3, nil},
		{"never whole", false, []seg{{0, 10}, {10, 20}}, -1, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAssembler(inspect)
			if tt.start {
				a.Start(t0, k, isn)
			}
			for i, s := range tt.segs {
				r, ok := a.Add(t0, k, packetID{id: uint32(i + 1)}, isn+uint32(s.off), hello[s.off:s.end])
				if ok != (i == tt.readyAt) {
					t.Fatalf("segment %d: ready %v", i, ok)
				}
				if ok && (r.Err != tt.wantErr || len(r.IDs) != tt.ids) {
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
		})
	}
}

func TestAssemblerBounds(t *testing.T) {
	k := FlowKey{netip.MustParseAddrPort("192.0.2.10:40000"), netip.MustParseAddrPort("203.0.113.80:443")}
	incomplete := func(FlowKey, []byte) error { return ErrIncomplete }
	a := NewAssembler(incomplete)
	for i := range MaxSegments {
		r, ok := a.Add(t0, k, packetID{id: uint32(i)}, uint32(i), []byte{1})
		if ok != (i == MaxSegments-1) {
			t.Fatalf("segment %d: ready %v", i, ok)
		}
		if ok && (r.Err != ErrIncomplete || len(r.IDs) != MaxSegments) {
			t.Fatalf("%+v", r)
		}
	}
	a = NewAssembler(incomplete)
	if _, ok := a.Add(t0, k, packetID{id: 1}, 0, make([]byte, MaxHelloBytes)); !ok {
		t.Fatal("a flow at the byte bound is held")
	}
	a = NewAssembler(incomplete)
	for i := range MaxFlows {
		k := FlowKey{netip.AddrPortFrom(client, uint16(i)), k.Dst}
		if _, ok := a.Add(t0, k, packetID{id: uint32(i)}, 0, []byte{1}); ok {
			t.Fatal("ready")
		}
	}
	k2 := FlowKey{netip.AddrPortFrom(other, 1), k.Dst}
	if r, ok := a.Add(t0, k2, packetID{id: 99}, 0, []byte{1}); !ok || len(r.IDs) != 1 || a.Held() != MaxFlows {
		t.Fatalf("a flow beyond MaxFlows: ready %v %+v, held %d", ok, r, a.Held())
	}
}
