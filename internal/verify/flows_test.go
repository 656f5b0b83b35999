package verify

import (
	"net/netip"
	"testing"
	"time"
)

// TestVerdictsKeepsTheNewest: past its bound, the oldest verdict goes,
// never the newest (a late packet of a flow just judged must find its
// verdict however many flows came before it); a verdict set again on the
// same key is not dropped with its older slot; time still expires them.
func TestVerdictsKeepsTheNewest(t *testing.T) {
	key := func(i int) FlowKey {
		return FlowKey{netip.AddrPortFrom(client, uint16(i)), netip.AddrPortFrom(edge, 443)}
	}
	v := newVerdicts(4)
	for i := range 10 {
		v.remember(t0, key(i), uint32(i))
	}
	for _, c := range []struct {
		i    int
		want bool
	}{{0, false}, {5, false}, {6, true}, {9, true}} {
		if m, ok := v.lookup(key(c.i)); ok != c.want || (ok && m != uint32(c.i)) {
			t.Errorf("flow %d: verdict %d, remembered %v, want %v", c.i, m, ok, c.want)
		}
	}
	if v.len() != 4 {
		t.Errorf("remembered %d, want the bound 4", v.len())
	}
	// Flow 6 judged again: its first slot goes next, its verdict stays.
	v.remember(t0.Add(time.Second), key(6), 60)
	if m, ok := v.lookup(key(6)); !ok || m != 60 {
		t.Errorf("flow 6 judged again: %d %v", m, ok)
	}
	v.forget(key(9))
	if _, ok := v.lookup(key(9)); ok {
		t.Error("a forgotten verdict is still there")
	}
	v.expire(t0.Add(MaxWait))
	if _, ok := v.lookup(key(7)); ok {
		t.Error("a verdict older than MaxWait is still there")
	}
	if _, ok := v.lookup(key(6)); !ok {
		t.Error("a verdict younger than MaxWait expired")
	}
}

// TestDecodeTCP: the flow, sequence number and bytes of a queued packet;
// a GSO packet without an IP length (BIG TCP) carries what was copied;
// what cannot be read as TCP is an error (the queue drops it).
func TestDecodeTCP(t *testing.T) {
	tcp := func(flags byte, data string) []byte {
		h := []byte{0x30, 0x39, 0x01, 0xbb, 0, 0, 0x10, 0, 0, 0, 0, 0, 5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0}
		return append(h, data...)
	}
	v4 := func(totalLen int, l4 []byte) []byte {
		h := []byte{0x45, 0, byte(totalLen >> 8), byte(totalLen), 0, 0, 0x40, 0, 64, 6, 0, 0, 192, 0, 2, 10, 203, 0, 113, 80}
		return append(h, l4...)
	}
	v6 := func(payloadLen int, next byte, l4 []byte) []byte {
		h := make([]byte, 40)
		h[0], h[4], h[5], h[6], h[7] = 0x60, byte(payloadLen>>8), byte(payloadLen), next, 64
		copy(h[8:], netip.MustParseAddr("2001:db8:1::10").AsSlice())
		copy(h[24:], netip.MustParseAddr("2001:db8:cd::50").AsSlice())
		return append(h, l4...)
	}
	hello := tcp(0x18, "\x16\x03\x01")
	for _, c := range []struct {
		name string
		pkt  []byte
		data string
		src  string
		err  bool
	}{
		{"ipv4", v4(20+len(hello), hello), "\x16\x03\x01", "192.0.2.10:12345", false},
		{"ipv4 trailing bytes past its length", append(v4(20+len(hello), hello), 0, 0), "\x16\x03\x01", "192.0.2.10:12345", false},
		{"ipv4 without a length (BIG TCP)", v4(0, hello), "\x16\x03\x01", "192.0.2.10:12345", false},
		{"ipv6", v6(len(hello), 6, hello), "\x16\x03\x01", "[2001:db8:1::10]:12345", false},
		{"ipv6 without a length (BIG TCP)", v6(0, 6, hello), "\x16\x03\x01", "[2001:db8:1::10]:12345", false},
		{"ipv6 with a destination options header", v6(8+len(hello), 60, append([]byte{6, 0, 1, 4, 0, 0, 0, 0}, hello...)), "", "", true},
		{"udp", func() []byte { p := v4(28, make([]byte, 8)); p[9] = 17; return p }(), "", "", true},
		{"truncated", v4(20+len(hello), hello)[:30], "", "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := decodeTCP(c.pkt)
			if (err != nil) != c.err {
				t.Fatalf("error %v, want error %v", err, c.err)
			}
			if err != nil {
				return
			}
			if string(p.data) != c.data || p.key.Src.String() != c.src || p.key.Dst.Port() != 443 || p.seq != 0x1000 {
				t.Errorf("got %+v", p)
			}
		})
	}
}

// FuzzDecodeTCP: any bytes the kernel queues decode without a panic, and
// a decoded packet's bytes lie within it.
func FuzzDecodeTCP(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeTCP(b)
		if err != nil {
			return
		}
		if len(p.data) > len(b) || !p.key.Src.IsValid() || !p.key.Dst.IsValid() {
			t.Fatalf("decoded %+v from %d bytes", p, len(b))
		}
	})
}
