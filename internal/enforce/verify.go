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
	ctrVerifyRST   = "verify_resets"
	ctrQUICDrops   = "quic_drops"
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
	// A verdict coming back: its packet mark becomes the flow's.
	rule(append(append(markIs(expr.MetaKeyMARK, CtVerified), ctMarkSet(CtVerified)...), accept_())...)
	rule(append(append(markIs(expr.MetaKeyMARK, CtRejected), ctMarkSet(CtRejected)...),
		counterRef(ctrVerifyRST), &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})...)
	// Every later client packet of a rejected flow is reset too. Only
	// the client's direction: the reset itself belongs to the flow, and
	// on hook output it passes this chain.
	rule(append(append(append(markIs(expr.CtKeyMARK, CtRejected), ctOriginal()...), l4proto(unix.IPPROTO_TCP)...),
		counterRef(ctrVerifyRST), &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})...)
	rule(append(append(markIs(expr.CtKeyMARK, CtRejected), ctOriginal()...), &expr.Verdict{Kind: expr.VerdictDrop})...)
	rule(append(append(markIs(expr.CtKeyMARK, CtPending), ctOriginal()...), nfqueue(s.Verify.Queue, s.Verify.bypass(s)))...)
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
	}
	for _, v6 := range []bool{false, true} {
		for _, set := range []string{pick(v6, setAllow6, setAllow4), pick(v6, setAllow6R, setAllow4R)} {
			exprs := append(lookupKey(v6, s.Global, set), l4proto(unix.IPPROTO_TCP)...)
			exprs = append(exprs,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Lookup{SourceRegister: 1, SetName: setVerifyPorts},
				&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
					Mask: binary.NativeEndian.AppendUint32(nil, ^CtMask), Xor: binary.NativeEndian.AppendUint32(nil, CtPending)},
				&expr.Ct{Register: 1, Key: expr.CtKeyMARK, SourceRegister: true},
				// The SYN goes to fqdngate too: its sequence number says
				// where the flow's bytes start, so that segments that
				// arrive out of order are put together in order.
				nfqueue(s.Verify.Queue, s.Verify.bypass(s)))
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
