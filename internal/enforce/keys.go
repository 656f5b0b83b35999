package enforce

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"

	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// Set names. The "r" sets hold rules with port ranges; they need the
// interval (pipapo) set type, which is slower to update than a hash, so
// single ports stay in the hash sets.
const (
	setAllow4  = "allow4"
	setAllow4R = "allow4r"
	setAllow6  = "allow6"
	setAllow6R = "allow6r"
)

// keyType is the set key: [client .] address . l4proto . port.
func keyType(v6, global bool) nftables.SetDatatype {
	addr := nftables.TypeIPAddr
	if v6 {
		addr = nftables.TypeIP6Addr
	}
	if global {
		return nftables.MustConcatSetType(addr, nftables.TypeInetProto, nftables.TypeInetService)
	}
	return nftables.MustConcatSetType(addr, addr, nftables.TypeInetProto, nftables.TypeInetService)
}

// setFor names the set an element belongs in.
func setFor(e ledger.Elem) string {
	switch {
	case e.Addr.Is4() && e.Port.IsRange():
		return setAllow4R
	case e.Addr.Is4():
		return setAllow4
	case e.Port.IsRange():
		return setAllow6R
	}
	return setAllow6
}

// encodeKey lays out an element the way the kernel compares it: each field
// padded to a 4-byte register, ports big-endian. For range sets, port is
// the range start or end. The addresses are copied from arrays: netip's
// AsSlice allocates.
func encodeKey(e ledger.Elem, global bool, port uint16) ([]byte, error) {
	addr := e.Addr.Unmap()
	b := make([]byte, 0, 2*16+8)
	if !global {
		c := e.Client.Unmap()
		if c.BitLen() != addr.BitLen() {
			return nil, fmt.Errorf("element %v: client %v and address %v are of different families", e, c, addr)
		}
		b = appendAddr(b, c)
	}
	b = appendAddr(b, addr)
	b = append(b, e.Port.Proto, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, port)
	return append(b, 0, 0), nil
}

func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		a4 := a.As4()
		return append(b, a4[:]...)
	}
	a16 := a.As16()
	return append(b, a16[:]...)
}

// setElement builds the kernel element for e with a timeout.
func setElement(e ledger.Elem, global bool) (nftables.SetElement, error) {
	key, err := encodeKey(e, global, e.Port.Lo)
	if err != nil {
		return nftables.SetElement{}, err
	}
	el := nftables.SetElement{Key: key}
	if e.Port.IsRange() {
		if el.KeyEnd, err = encodeKey(e, global, e.Port.Hi); err != nil {
			return nftables.SetElement{}, err
		}
	}
	return el, nil
}

// elemKey is a ledger.Elem without netip's zone pointer, as the key of
// the held map: it holds an entry per kernel
// element, up to millions, which the collector then need not scan.
type elemKey struct {
	client, addr [16]byte
	kinds        uint8 // client's family (low nibble: 0, 4, 6), address's (high)
	port         policy.PortRange
}

func family(a netip.Addr) uint8 {
	switch {
	case a.Is4():
		return 4
	case a.Is6():
		return 6
	}
	return 0
}

func keyOf(e ledger.Elem) elemKey {
	return elemKey{client: e.Client.As16(), addr: e.Addr.As16(), kinds: family(e.Client) | family(e.Addr)<<4, port: e.Port}
}
