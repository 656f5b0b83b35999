package enforce

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// The kernel compares keys byte for byte: each field padded to four
// bytes, ports big-endian, the client first unless the scope is global.
func TestSetElementKeyLayout(t *testing.T) {
	v4c, v4a := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("203.0.113.9")
	v6c, v6a := netip.MustParseAddr("2001:db8::7"), netip.MustParseAddr("2001:db8:1::9")
	tcp := policy.PortRange{Proto: 6, Lo: 443, Hi: 443}
	udpRange := policy.PortRange{Proto: 17, Lo: 5000, Hi: 5100}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	a16 := func(a netip.Addr) []byte { b := a.As16(); return b[:] }
	a4 := func(a netip.Addr) []byte { b := a.As4(); return b[:] }
	for _, tc := range []struct {
		name        string
		e           ledger.Elem
		global      bool
		key, keyEnd []byte
		wantErr     bool
	}{
		{name: "v4 per client", e: ledger.Elem{Client: v4c, Addr: v4a, Port: tcp},
			key: cat(a4(v4c), a4(v4a), []byte{6, 0, 0, 0, 0x01, 0xbb, 0, 0})},
		{name: "v4 global", e: ledger.Elem{Addr: v4a, Port: tcp}, global: true,
			key: cat(a4(v4a), []byte{6, 0, 0, 0, 0x01, 0xbb, 0, 0})},
		{name: "v4-mapped address unmapped", e: ledger.Elem{Addr: netip.AddrFrom16(v4a.As16()), Port: tcp}, global: true,
			key: cat(a4(v4a), []byte{6, 0, 0, 0, 0x01, 0xbb, 0, 0})},
		{name: "v6 per client range", e: ledger.Elem{Client: v6c, Addr: v6a, Port: udpRange},
			key:    cat(a16(v6c), a16(v6a), []byte{17, 0, 0, 0, 0x13, 0x88, 0, 0}),
			keyEnd: cat(a16(v6c), a16(v6a), []byte{17, 0, 0, 0, 0x13, 0xec, 0, 0})},
		{name: "v6 global", e: ledger.Elem{Addr: v6a, Port: tcp}, global: true,
			key: cat(a16(v6a), []byte{6, 0, 0, 0, 0x01, 0xbb, 0, 0})},
		{name: "families differ", e: ledger.Elem{Client: v4c, Addr: v6a, Port: tcp}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			el, err := setElement(tc.e, tc.global)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("no error for %v", tc.e)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(el.Key, tc.key) || !bytes.Equal(el.KeyEnd, tc.keyEnd) {
				t.Fatalf("key %x end %x, want %x end %x", el.Key, el.KeyEnd, tc.key, tc.keyEnd)
			}
		})
	}
}
