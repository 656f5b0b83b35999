package enforce

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables"

	"github.com/fqdngate/fqdngate/internal/ledger"
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
// the range start or end.
func encodeKey(e ledger.Elem, global bool, port uint16) ([]byte, error) {
	addr := e.Addr.Unmap()
	n := 4
	if addr.Is6() {
		n = 16
	}
	size := n + 8
	if !global {
		size += n
	}
	b := make([]byte, 0, size)
	if !global {
		c := e.Client.Unmap()
		if c.BitLen() != addr.BitLen() {
			return nil, fmt.Errorf("element %v: client %v and address %v are of different families", e, c, addr)
		}
		b = append(b, c.AsSlice()...)
	}
	b = append(b, addr.AsSlice()...)
	b = append(b, e.Port.Proto, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, port)
	b = append(b, 0, 0)
	return b, nil
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
