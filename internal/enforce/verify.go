package enforce

import (
	"encoding/binary"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

// Verification (DESIGN section 11) in the kernel: the conntrack-mark
// pattern. A new TCP flow to an element on a verified port gets the mark
// CtPending; its client packets go to the queue until fqdngate's verdict
// sets CtVerified (the rest of the flow never leaves the kernel) or
// CtRejected (every packet after is answered with a TCP reset).
//
// The verdict cannot set the conntrack mark itself where the kernel
// lacks CONFIG_NETFILTER_NETLINK_GLUE_CT, so it sets the same bits on
// the packet's mark and repeats the packet through the hook: the filter
// chain's first rules copy them to the conntrack mark, clear them from
// the packet, and accept or reset it.
const (
	CtMask     uint32 = 0x03000000
	CtPending  uint32 = 0x01000000
	CtVerified uint32 = 0x02000000
	CtRejected uint32 = 0x03000000
)

// Verify modes.
const (
	VerifyOff     = "off"
	VerifyObserve = "observe"
	VerifyEnforce = "enforce"
)

const (
	setVerifyPorts = "verify_ports"
	setVerifyBare4 = "verify_bare4"
	setVerifyBare6 = "verify_bare6"
	ctrVerifyRST   = "verify_resets"
	ctrQUICDrops   = "quic_drops"
	ctrInvalid     = "verify_invalid"
)

// VerifySpec is the kernel side of verification.
type VerifySpec struct {
	// Mode is off, observe or enforce ("" is off).
	Mode string
	// Ports are the verified TCP ports.
	Ports []uint16
	// Queue is the NFQUEUE number the first payload packets go to.
	Queue uint16
}

func (v VerifySpec) on() bool { return v.Mode == VerifyObserve || v.Mode == VerifyEnforce }

// bypass: only enforcing verification holds flows when fqdngate cannot
// judge them; observing (verify observe, or the whole gateway in observe
// mode) lets them through.
func (v VerifySpec) bypass(s Spec) bool { return v.Mode != VerifyEnforce || s.Observe }

// buildVerifyFilter adds, ahead of the filter chain's accept of
// established flows, the reset of flows judged bad and the queueing of
// the client packets of flows not judged yet. The queue has no bypass:
// while fqdngate is down the packets of new flows on verified ports are
// dropped (fail closed; TCP retransmits them), flows already judged go
// on in the kernel.
func buildVerifyFilter(cc *nftables.Conn, t *nftables.Table, filter *nftables.Chain, s Spec) {
	if !s.Verify.on() {
		return
	}
	cc.AddObj(&nftables.CounterObj{Table: t, Name: ctrVerifyRST})
	rule := func(exprs ...expr.Any) { cc.AddRule(&nftables.Rule{Table: t, Chain: filter, Exprs: exprs}) }
	// A verdict coming back: its packet mark becomes the flow's, only
	// while the flow waits for one (a mark that some other tool set on a
	// packet of another flow opens nothing).
	pending := markIs(expr.CtKeyMARK, CtPending)
	rule(append(append(append(markIs(expr.MetaKeyMARK, CtVerified), pending...), ctMarkSet(CtVerified)...), accept_())...)
	rule(append(append(append(markIs(expr.MetaKeyMARK, CtRejected), pending...), ctMarkSet(CtRejected)...),
		counterRef(ctrVerifyRST), &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})...)
	// A verdict for a flow already decided (a packet that was queued
	// before the first verdict took effect) only takes its bits off the
	// packet; the flow's mark says the rest below.
	rule(append(markNot(expr.MetaKeyMARK, 0), clearPacketMark()...)...)
	// Every later client packet of a rejected flow is reset too. Only
	// the client's direction: the reset itself belongs to the flow, and
	// on hook output it passes this chain.
	rule(append(append(append(markIs(expr.CtKeyMARK, CtRejected), ctOriginal()...), l4proto(unix.IPPROTO_TCP)...),
		counterRef(ctrVerifyRST), &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})...)
	rule(append(append(markIs(expr.CtKeyMARK, CtRejected), ctOriginal()...), &expr.Verdict{Kind: expr.VerdictDrop})...)
	for _, v6 := range []bool{false, true} {
		set := bareSet(t, v6)
		_ = cc.AddSet(set, bareElems(v6))
		rule(append(append(append(markIs(expr.CtKeyMARK, CtPending), ctOriginal()...), bare(v6, set.Name)...), accept_())...)
	}
	// The bytes judged must be those the server reads: a segment whose
	// TTL (hop limit) would end it between the gateway and the server
	// would be judged and never arrive. The client's packets of a pending
	// flow leave with at least minTTL.
	for _, v6 := range []bool{false, true} {
		rule(append(append(append(markIs(expr.CtKeyMARK, CtPending), ctOriginal()...), nfproto(v6)...), raiseTTL(v6)...)...)
	}
	rule(append(append(markIs(expr.CtKeyMARK, CtPending), ctOriginal()...), nfqueue(s.Verify.Queue, s.Verify.bypass(s)))...)
}

// minTTL is the TTL (hop limit) the client's packets of a pending flow
// leave with at least.
const minTTL = 64

// raiseTTL sets the IPv4 TTL (fixing the header checksum) or the IPv6
// hop limit to minTTL when it is lower.
func raiseTTL(v6 bool) []expr.Any {
	off, csum := uint32(8), expr.CsumTypeInet // IPv4 TTL; checksum at 10
	if v6 {
		off, csum = 7, expr.CsumTypeNone // IPv6 hop limit
	}
	w := &expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 1, CsumType: csum}
	if !v6 {
		w.CsumOffset = 10
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 1},
		&expr.Cmp{Op: expr.CmpOpLt, Register: 1, Data: []byte{minTTL}},
		&expr.Immediate{Register: 1, Data: []byte{minTTL}},
		w,
	}
}

// markNot matches a packet mark (or flow mark) whose CtMask bits are not
// v.
func markNot[K expr.MetaKey | expr.CtKey](key K, v uint32) []expr.Any {
	m := markIs(key, v)
	m[len(m)-1].(*expr.Cmp).Op = expr.CmpOpNeq
	return m
}

// clearPacketMark takes the CtMask bits off the packet's mark.
func clearPacketMark() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, ^CtMask), Xor: make([]byte, 4)},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1, SourceRegister: true},
	}
}

// tagPacket sets the packet mark's CtMask bits to v.
func tagPacket(v uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, ^CtMask), Xor: binary.NativeEndian.AppendUint32(nil, v)},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1, SourceRegister: true},
	}
}

// A client segment of a pending flow that carries no byte and is not a
// SYN (the handshake's ACK, a window update, a FIN or RST) tells the
// verdict nothing: it stays in the kernel, so that a new flow leaves it
// only twice, with its SYN and its first bytes. "No byte" is exact: the
// IP length is the IP and TCP headers' length, looked up in a set of
// (length, data offset) pairs, one per TCP header length. IPv4 with
// options and IPv6 with extension headers are not in the sets; their
// segments go to the queue as before, as does any segment that carries
// even one byte.
func bare(v6 bool, set string) []expr.Any {
	exprs := nfproto(v6)
	lenOff := uint32(2) // IPv4 total length
	if v6 {
		lenOff = 4 // IPv6 payload length
		exprs = append(exprs,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 6, Len: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}})
	} else {
		// Version 4, header of 5 words: no options.
		exprs = append(exprs,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 0, Len: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x45}},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}})
	}
	return append(exprs,
		// Not a SYN: a SYN of a new flow goes through the check chain.
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{tcpFlagSYN}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0}},
		&expr.Payload{DestRegister: reg32Base, Base: expr.PayloadBaseNetworkHeader, Offset: lenOff, Len: 2},
		&expr.Payload{DestRegister: reg32Base + 1, Base: expr.PayloadBaseTransportHeader, Offset: 12, Len: 1},
		&expr.Bitwise{SourceRegister: reg32Base + 1, DestRegister: reg32Base + 1, Len: 1, Mask: []byte{0xf0}, Xor: []byte{0}},
		&expr.Lookup{SourceRegister: reg32Base, SetName: set})
}

const tcpFlagSYN = 0x02

// bareSet holds, for each TCP data offset (5 to 15 words), the IP length
// of a segment without data: key (length, data offset << 4), each
// padded to a register.
func bareSet(t *nftables.Table, v6 bool) *nftables.Set {
	kt, _ := nftables.ConcatSetType(nftables.TypeInetService, nftables.TypeInetProto)
	return &nftables.Set{Table: t, Name: pick(v6, setVerifyBare6, setVerifyBare4), KeyType: kt, Concatenation: true, Constant: true}
}

func bareElems(v6 bool) []nftables.SetElement {
	var elems []nftables.SetElement
	for doff := 5; doff <= 15; doff++ {
		n := 4 * doff
		if !v6 {
			n += 20
		}
		key := binary.BigEndian.AppendUint16(nil, uint16(n))
		key = append(key, 0, 0, byte(doff<<4), 0, 0, 0)
		elems = append(elems, nftables.SetElement{Key: key})
	}
	return elems
}

// ctOriginal matches packets in the direction of the flow's first
// packet (IP_CT_DIR_ORIGINAL): the client's.
func ctOriginal() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeyDIRECTION},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0}},
	}
}

// nfqueue is the xtables NFQUEUE target (revision 3, through nft's
// compat expression: the kernel's nft queue expression is not built
// everywhere the xtables one is). No fanout, so a flow stays on one
// queue. Enforcing, no bypass: with no reader (the daemon down) or a full
// queue the packets are dropped, fail closed. Observing, bypass: observe
// never blocks, so without a reader the packets go on unjudged.
func nfqueue(num uint16, bypass bool) expr.Any {
	var flags uint16
	if bypass {
		flags = nfqFlagBypass
	}
	info := xt.Unknown(binary.NativeEndian.AppendUint16(binary.NativeEndian.AppendUint16(
		binary.NativeEndian.AppendUint16(nil, num), 1), flags))
	info = append(info, 0, 0) // XT_ALIGN
	return &expr.Target{Name: "NFQUEUE", Rev: 3, Info: &info}
}

// markIs matches the packet's mark (expr.MetaKeyMARK) or the flow's
// (expr.CtKeyMARK) under CtMask against v.
// nfqFlagBypass is NFQ_FLAG_BYPASS of xt_NFQUEUE's info: accept when no
// program listens on the queue.
const nfqFlagBypass = 0x01

func markIs[K expr.MetaKey | expr.CtKey](key K, v uint32) []expr.Any {
	var load expr.Any = &expr.Ct{Register: 1, Key: expr.CtKey(key)}
	if m, ok := any(key).(expr.MetaKey); ok {
		load = &expr.Meta{Key: m, Register: 1}
	}
	return []expr.Any{load,
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, CtMask), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, v)},
	}
}

// ctMarkSet puts v in the flow's mark and clears it from the packet's,
// leaving the other bits of both.
func ctMarkSet(v uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, ^CtMask), Xor: binary.NativeEndian.AppendUint32(nil, v)},
		&expr.Ct{Register: 1, Key: expr.CtKeyMARK, SourceRegister: true},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, ^CtMask), Xor: make([]byte, 4)},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1, SourceRegister: true},
	}
}

// buildVerifyCheck adds, ahead of the check chain's lookups, the rules
// that mark new TCP flows to elements on verified ports as pending (and
// queue their SYN), and,
// in enforce mode, drops QUIC (udp/443): its Initial is not parsed, so
// clients fall back to TCP, where the name is verified.
func buildVerifyCheck(cc *nftables.Conn, t *nftables.Table, check *nftables.Chain, s Spec) {
	if !s.Verify.on() {
		return
	}
	ports := &nftables.Set{Table: t, Name: setVerifyPorts, KeyType: nftables.TypeInetService, Constant: true}
	var elems []nftables.SetElement
	for _, p := range s.Verify.Ports {
		elems = append(elems, nftables.SetElement{Key: binary.BigEndian.AppendUint16(nil, p)})
	}
	_ = cc.AddSet(ports, elems)
	rule := func(exprs ...expr.Any) { cc.AddRule(&nftables.Rule{Table: t, Chain: check, Exprs: exprs}) }
	if s.Verify.Mode == VerifyEnforce && !s.Observe {
		cc.AddObj(&nftables.CounterObj{Table: t, Name: ctrQUICDrops})
		rule(append(l4Port(unix.IPPROTO_UDP, 443), counterRef(ctrQUICDrops), &expr.Verdict{Kind: expr.VerdictDrop})...)
		// A packet without a conntrack entry (invalid, or untracked by a
		// notrack rule) has no flow mark to hold it for a verdict: on a
		// verified port it would pass the allow list unjudged.
		cc.AddObj(&nftables.CounterObj{Table: t, Name: ctrInvalid})
		state := uint32(expr.CtStateBitINVALID | expr.CtStateBitUNTRACKED)
		rule(append(append(l4proto(unix.IPPROTO_TCP),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, SetName: setVerifyPorts},
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binary.NativeEndian.AppendUint32(nil, state), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)}),
			counterRef(ctrInvalid), &expr.Verdict{Kind: expr.VerdictDrop})...)
	}
	for _, v6 := range []bool{false, true} {
		// A SYN too is judged by where it goes on: one that ends between
		// the gateway and the server would leave fqdngate with a start
		// the server never saw (raiseTTL, as in the filter chain).
		rule(append(append(append(nfproto(v6), l4proto(unix.IPPROTO_TCP)...),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, SetName: setVerifyPorts}), raiseTTL(v6)...)...)
		for _, set := range []string{pick(v6, setAllow6, setAllow4), pick(v6, setAllow6R, setAllow4R)} {
			exprs := append(lookupKey(v6, s.Global, set), l4proto(unix.IPPROTO_TCP)...)
			exprs = append(exprs,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Lookup{SourceRegister: 1, SetName: setVerifyPorts},
				&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
					Mask: binary.NativeEndian.AppendUint32(nil, ^CtMask), Xor: binary.NativeEndian.AppendUint32(nil, CtPending)},
				&expr.Ct{Register: 1, Key: expr.CtKeyMARK, SourceRegister: true})
			// The SYN goes to fqdngate too: its sequence number says
			// where the flow's bytes start, so that segments that arrive
			// out of order are put together in order. Its packet mark
			// tells fqdngate that this SYN made the flow (a later SYN
			// of the flow comes through the filter chain untagged).
			exprs = append(append(exprs, tagPacket(CtPending)...), nfqueue(s.Verify.Queue, s.Verify.bypass(s)))
			rule(exprs...)
		}
	}
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}
