package monitor

import (
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/fqdngate/fqdngate/internal/enforce"
	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/policy"
)

var (
	t0      = time.Unix(1_800_000_000, 0)
	devA    = netip.MustParseAddr("192.0.2.10")
	devB    = netip.MustParseAddr("192.0.2.11")
	cdnAddr = netip.MustParseAddr("203.0.113.7")
	tcp443  = policy.PortRange{Proto: unix.IPPROTO_TCP, Lo: 443, Hi: 443}
)

func answer(client netip.Addr, name string, ttl time.Duration, at time.Time) ledger.Answer {
	return ledger.Answer{Client: client, Group: "devices", Name: name,
		Chain: []string{name + ".edgekey.example", "e1234.a.akamaiedge.example"},
		Addrs: []netip.Addr{cdnAddr}, Rules: []string{"azure-sphere"}, Ports: []policy.PortRange{tcp443},
		TTL: ttl, Expires: at.Add(ttl + 5*time.Second)}
}

func TestExplainReasons(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(l *ledger.Ledger, d *Denials)
		client  netip.Addr
		port    uint16
		at      time.Time
		reason  Reason
		message string
	}{
		{"never resolved", func(*ledger.Ledger, *Denials) {}, devA, 443, t0, NeverResolved,
			"192.0.2.10 never got 203.0.113.7 from fqdngate"},
		{"allowed", func(l *ledger.Ledger, _ *Denials) {
			l.Record(t0, answer(devA, "prod.update.sphere.azure.net", 20*time.Second, t0))
		},
			devA, 443, t0.Add(10 * time.Second), Allowed,
			"203.0.113.7 is prod.update.sphere.azure.net → prod.update.sphere.azure.net.edgekey.example → e1234.a.akamaiedge.example for 192.0.2.10 on tcp/443 until"},
		{"expired", func(l *ledger.Ledger, _ *Denials) {
			l.Record(t0, answer(devA, "prod.update.sphere.azure.net", 20*time.Second, t0))
		},
			devA, 443, t0.Add(67 * time.Second), Expired,
			"203.0.113.7 was prod.update.sphere.azure.net → prod.update.sphere.azure.net.edgekey.example → e1234.a.akamaiedge.example for 192.0.2.10, tcp/443, expired 42s ago (ttl 20s + grace 5s)"},
		{"port", func(l *ledger.Ledger, _ *Denials) {
			l.Record(t0, answer(devA, "prod.core.sphere.azure.net", 20*time.Second, t0))
		},
			devA, 8443, t0.Add(time.Second), WrongPort,
			"allowed on tcp/443, not on tcp/8443: add the port to rule azure-sphere"},
		{"other client", func(l *ledger.Ledger, _ *Denials) {
			l.Record(t0, answer(devB, "prod.core.sphere.azure.net", 20*time.Second, t0))
		},
			devA, 443, t0.Add(time.Second), OtherClient,
			"203.0.113.7 is prod.core.sphere.azure.net → prod.core.sphere.azure.net.edgekey.example → e1234.a.akamaiedge.example for 192.0.2.11, not for 192.0.2.10"},
		{"denied name", func(l *ledger.Ledger, d *Denials) {
			l.Record(t0, answer(devB, "evil.example.com", 20*time.Second, t0))
			d.Add(devA, "evil.example.com", t0)
		}, devA, 443, t0.Add(time.Second), DeniedName,
			"192.0.2.10 asked for evil.example.com at 2027-01-15T08:00:00Z, which is denied for it; 203.0.113.7 is evil.example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := ledger.New(ledger.Options{})
			d := NewDenials(4, 4)
			tc.setup(l, d)
			x := &Explainer{Ledger: l, Denials: d, Grace: 5 * time.Second}
			ex := x.Explain(tc.at, tc.client, cdnAddr, unix.IPPROTO_TCP, tc.port)
			if ex.Reason != tc.reason || !strings.Contains(ex.Message, tc.message) {
				t.Errorf("got %s: %q\nwant %s: %q", ex.Reason, ex.Message, tc.reason, tc.message)
			}
		})
	}
}

func TestDenialsAreBounded(t *testing.T) {
	d := NewDenials(2, 2)
	for i, n := range []string{"a.example", "b.example", "c.example"} {
		d.Add(devA, n, t0.Add(time.Duration(i)*time.Second))
	}
	if _, ok := d.Asked(devA, "a.example"); ok {
		t.Error("oldest name of a client not forgotten")
	}
	if at, ok := d.Asked(devA, "c.example"); !ok || !at.Equal(t0.Add(2*time.Second)) {
		t.Error("newest name forgotten")
	}
	d.Add(devB, "x.example", t0)
	d.Add(netip.MustParseAddr("192.0.2.12"), "y.example", t0)
	if _, ok := d.Asked(devA, "c.example"); ok {
		t.Error("least recent client not forgotten")
	}
	if len(d.clients) != 2 || d.lru.Len() != 2 {
		t.Errorf("%d clients kept, want 2", len(d.clients))
	}
}

func TestRing(t *testing.T) {
	r := NewRing(3)
	for i := range 5 {
		r.Add(Event{Name: string(rune('a' + i))})
	}
	evs, lost := r.Since(0, 10)
	if !lost || len(evs) != 3 || evs[0].Seq != 3 || evs[2].Name != "e" {
		t.Fatalf("since 0: %v lost=%v", evs, lost)
	}
	evs, lost = r.Since(4, 10)
	if lost || len(evs) != 1 || evs[0].Seq != 5 {
		t.Fatalf("since 4: %v lost=%v", evs, lost)
	}
	if evs, _ := r.Since(5, 10); len(evs) != 0 {
		t.Fatalf("since 5: %v", evs)
	}
	if evs, _ := r.Since(0, 2); len(evs) != 2 {
		t.Fatalf("limit: %v", evs)
	}
}

// TestAttributeCountsEverySamplesFew: a flood is counted exactly while
// the ring and the log get a bounded number of samples.
func TestAttributeCountsEverySamplesFew(t *testing.T) {
	now := t0
	m := New(ledger.New(ledger.Options{}), Options{Now: func() time.Time { return now }}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	pkt := Packet{Src: devA, Dst: cdnAddr, Proto: unix.IPPROTO_TCP, Port: 443}
	const n = 10000
	for range n {
		m.Attribute(now, enforce.PrefixDrop, pkt)
	}
	m.Attribute(now, enforce.PrefixDoT, Packet{Src: devA, Dst: cdnAddr, Proto: unix.IPPROTO_TCP, Port: 853})
	drops, _, _, _ := m.Counts()
	if drops[NeverResolved] != n || drops[DoT] != 1 {
		t.Fatalf("counts %v", drops)
	}
	evs, _ := m.Events.Since(0, ringLen)
	if len(evs) != samplesBurst {
		t.Errorf("%d events sampled from one instant, want the burst %d", len(evs), samplesBurst)
	}
	if m.Suppressed() != n+1-samplesBurst {
		t.Errorf("suppressed %d", m.Suppressed())
	}
	now = now.Add(time.Second)
	m.Attribute(now, enforce.PrefixWouldDrop, pkt)
	if _, would, _, _ := m.Counts(); would[NeverResolved] != 1 {
		t.Errorf("would-drops %v", would)
	}
}

func ipv4Packet(t testing.TB, proto int, src, dst string, port uint16) []byte {
	h := &ipv4.Header{Version: 4, Len: ipv4.HeaderLen, TotalLen: ipv4.HeaderLen + 8, TTL: 64, Protocol: proto,
		Src: netip.MustParseAddr(src).AsSlice(), Dst: netip.MustParseAddr(dst).AsSlice()}
	b, err := h.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return append(b, 0xc0, 0x01, byte(port>>8), byte(port), 0, 0, 0, 0)
}

func TestDecodePacket(t *testing.T) {
	v6 := make([]byte, 40+4)
	v6[0] = 0x60
	v6[6] = unix.IPPROTO_UDP
	copy(v6[8:24], netip.MustParseAddr("2001:db8:1::10").AsSlice())
	copy(v6[24:40], netip.MustParseAddr("2001:db8:cd::7").AsSlice())
	v6[42], v6[43] = 0, 123
	tests := []struct {
		name string
		b    []byte
		want string
		err  bool
	}{
		{"tcp4", ipv4Packet(t, unix.IPPROTO_TCP, "192.0.2.10", "203.0.113.7", 443), "192.0.2.10 → 203.0.113.7 tcp/443", false},
		{"udp4", ipv4Packet(t, unix.IPPROTO_UDP, "192.0.2.10", "203.0.113.7", 123), "192.0.2.10 → 203.0.113.7 udp/123", false},
		{"icmp4", ipv4Packet(t, unix.IPPROTO_ICMP, "192.0.2.10", "203.0.113.7", 0), "192.0.2.10 → 203.0.113.7 proto 1", false},
		{"udp6", v6, "2001:db8:1::10 → 2001:db8:cd::7 udp/123", false},
		{"empty", nil, "", true},
		{"short v4", ipv4Packet(t, unix.IPPROTO_TCP, "192.0.2.10", "203.0.113.7", 443)[:10], "", true},
		{"not ip", []byte{0x12, 0, 0}, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := DecodePacket(tc.b)
			if (err != nil) != tc.err {
				t.Fatalf("err %v", err)
			}
			if err == nil && p.String() != tc.want {
				t.Errorf("got %q, want %q", p, tc.want)
			}
		})
	}
}

// FuzzDecodePacket: whatever the kernel hands over, decoding never panics
// and a decoded packet has valid addresses of one family.
func FuzzDecodePacket(f *testing.F) {
	f.Add(ipv4Packet(f, unix.IPPROTO_TCP, "192.0.2.10", "203.0.113.7", 443))
	f.Add([]byte{0x60, 0, 0, 0, 0, 4, 6, 64})
	f.Add([]byte{0x45})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePacket(b)
		if err != nil {
			return
		}
		if !p.Src.IsValid() || !p.Dst.IsValid() || p.Src.Is4() != p.Dst.Is4() {
			t.Fatalf("decoded %v from %x", p, b)
		}
	})
}

// TestAttributeDNSBypass: a dropped packet to port 53 that fqdngate never
// opened is DNS to another resolver the redirect missed, and says which
// listen address is lacking; one to an address fqdngate did hand out keeps
// the ledger's reason.
func TestAttributeDNSBypass(t *testing.T) {
	resolver6 := netip.MustParseAddr("2001:db8::53")
	dev6 := netip.MustParseAddr("2001:db8:1::10")
	udp53 := policy.PortRange{Proto: unix.IPPROTO_UDP, Lo: 53, Hi: 53}
	tests := []struct {
		name    string
		granted bool // cdnAddr was handed out to devA for udp/53
		pkt     Packet
		reason  Reason
		message string
	}{
		{"udp/53 over IPv6", false, Packet{Src: dev6, Dst: resolver6, Proto: unix.IPPROTO_UDP, Port: 53}, DNSBypass,
			"2001:db8:1::10 sent DNS to 2001:db8::53, which was not redirected to fqdngate: it has no IPv6 listen address"},
		{"tcp/53 over IPv4", false, Packet{Src: devA, Dst: cdnAddr, Proto: unix.IPPROTO_TCP, Port: 53}, DNSBypass,
			"it has no IPv4 listen address"},
		{"not DNS", false, Packet{Src: devA, Dst: cdnAddr, Proto: unix.IPPROTO_UDP, Port: 54}, NeverResolved,
			"never got 203.0.113.7"},
		{"sctp/53 is not DNS", false, Packet{Src: devA, Dst: cdnAddr, Proto: unix.IPPROTO_SCTP, Port: 53}, NeverResolved,
			"never got 203.0.113.7"},
		{"a resolver allowed by name, expired", true, Packet{Src: devA, Dst: cdnAddr, Proto: unix.IPPROTO_UDP, Port: 53}, Expired,
			"expired 55s ago"},
		{"a resolver allowed by name, other port", true, Packet{Src: devA, Dst: cdnAddr, Proto: unix.IPPROTO_TCP, Port: 53}, WrongPort,
			"allowed on udp/53, not on tcp/53"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := t0.Add(time.Minute)
			led := ledger.New(ledger.Options{})
			if tc.granted {
				a := answer(devA, "resolver.example", 0, t0)
				a.Ports = []policy.PortRange{udp53}
				led.Record(t0, a)
			}
			m := New(led, Options{Now: func() time.Time { return now }}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			ex := m.Attribute(now, enforce.PrefixDrop, tc.pkt)
			if ex.Reason != tc.reason || !strings.Contains(ex.Message, tc.message) {
				t.Errorf("got %s: %q\nwant %s: %q", ex.Reason, ex.Message, tc.reason, tc.message)
			}
			if drops, _, _, _ := m.Counts(); drops[tc.reason] != 1 {
				t.Errorf("counted %v, want one %s", drops, tc.reason)
			}
		})
	}
}
