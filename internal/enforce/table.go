package enforce

import (
	"encoding/binary"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Registers: the 32-bit register file starts at 8 (NFT_REG32_00); a
// concatenated key is loaded into consecutive 32-bit registers.
const (
	reg32Base = 8
	regAddr   = 1 // a 16-byte register, for NAT addresses
	regPort   = 2
)

// Counter names.
const (
	ctrDrops        = "drops"
	ctrWouldDrops   = "would_drops"
	ctrDoTDrops     = "dot_drops"
	ctrDNSRedirects = "dns_redirects"
)

// Log prefixes, also what the NFLOG reader keys on.
const (
	PrefixDrop      = "fqdngate drop "
	PrefixWouldDrop = "fqdngate would-drop "
	PrefixDoT       = "fqdngate dot "
)

// build queues the whole table into cc: an idempotent create, a delete
// and a fresh create, so that the replacement is one atomic transaction
// whether or not the table existed.
func build(cc *nftables.Conn, s Spec) *nftables.Table {
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: s.Table}
	cc.AddTable(t)
	cc.DelTable(t)
	cc.AddTable(t)
	for _, name := range []string{ctrDrops, ctrWouldDrops, ctrDoTDrops, ctrDNSRedirects} {
		cc.AddObj(&nftables.CounterObj{Table: t, Name: name})
	}
	for _, set := range allowSets(t, s.Global) {
		// Errors here are only for malformed set descriptions, which are
		// fixed at compile time; Flush reports anything else.
		_ = cc.AddSet(set, nil)
	}

	hook, prio := nftables.ChainHookForward, nftables.ChainPriorityFilter
	if s.Hook == "output" {
		hook = nftables.ChainHookOutput
	}
	accept := nftables.ChainPolicyAccept
	filter := cc.AddChain(&nftables.Chain{Name: "filter", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: hook, Priority: prio, Policy: &accept})
	check := cc.AddChain(&nftables.Chain{Name: "check", Table: t})

	rule := func(c *nftables.Chain, exprs ...expr.Any) {
		cc.AddRule(&nftables.Rule{Table: t, Chain: c, Exprs: exprs})
	}
	buildVerifyFilter(cc, t, filter, s)
	rule(filter, ctStateEstablished()...)
	if s.Hook == "output" {
		// The host's own loopback, fqdngate's own upstream traffic, and
		// IPv6 neighbour discovery are never subject to the allow list.
		rule(filter, append(metaIfname(expr.MetaKeyOIFNAME, "lo"), accept_())...)
		// Nor is traffic to the host's own addresses: it never leaves.
		// DNS the host sent to another server and the dns chain
		// redirected to fqdngate is that, and this hook still sees the
		// device the packet was first routed to (oifname is not lo).
		rule(filter, &expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, unix.RTN_LOCAL)}, accept_())
		rule(filter, &expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, s.Mark)}, accept_())
		rule(filter, append(icmp6ND(), accept_())...)
		rule(filter, &expr.Verdict{Kind: expr.VerdictJump, Chain: "check"})
	} else {
		for _, p := range s.Clients {
			rule(filter, append(matchPrefix(p, true), &expr.Verdict{Kind: expr.VerdictJump, Chain: "check"})...)
		}
	}

	// DoT (853) bypasses the DNS view; drop it in enforce mode.
	dot := append(l4Port(unix.IPPROTO_TCP, 853), logGroup(s.NFLogGroup, PrefixDoT), counterRef(ctrDoTDrops))
	if !s.Observe {
		rule(check, append(dot, &expr.Verdict{Kind: expr.VerdictDrop})...)
	}
	buildVerifyCheck(cc, t, check, s)
	for _, v6 := range []bool{false, true} {
		for _, set := range []string{pick(v6, setAllow6, setAllow4), pick(v6, setAllow6R, setAllow4R)} {
			rule(check, append(lookupKey(v6, s.Global, set), accept_())...)
		}
	}
	buildStatic(cc, t, check, s)
	if s.Observe {
		rule(check, logGroup(s.NFLogGroup, PrefixWouldDrop), counterRef(ctrWouldDrops), accept_())
	} else {
		rule(check, logGroup(s.NFLogGroup, PrefixDrop), counterRef(ctrDrops), &expr.Verdict{Kind: expr.VerdictDrop})
	}

	buildRedirect(cc, t, s)
	return t
}

func allowSets(t *nftables.Table, global bool) []*nftables.Set {
	var sets []*nftables.Set
	for _, v6 := range []bool{false, true} {
		kt := keyType(v6, global)
		sets = append(sets,
			&nftables.Set{Table: t, Name: pick(v6, setAllow6, setAllow4), KeyType: kt, Concatenation: true, HasTimeout: true},
			&nftables.Set{Table: t, Name: pick(v6, setAllow6R, setAllow4R), KeyType: kt, Concatenation: true, HasTimeout: true, Interval: true},
		)
	}
	return sets
}

// buildRedirect sends clients' DNS (UDP and TCP port 53) to fqdngate,
// whichever server they addressed.
func buildRedirect(cc *nftables.Conn, t *nftables.Table, s Spec) {
	hook, prio := nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest
	if s.Hook == "output" {
		hook = nftables.ChainHookOutput
	}
	if !s.DNS4.IsValid() && !s.DNS6.IsValid() {
		return
	}
	nat := cc.AddChain(&nftables.Chain{Name: "dns", Table: t, Type: nftables.ChainTypeNAT, Hooknum: hook, Priority: prio})
	for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
		for _, target := range []netip.AddrPort{s.DNS4, s.DNS6} {
			if !target.IsValid() {
				continue
			}
			var sources [][]expr.Any
			if s.Hook == "output" {
				// Everything the host sends, except fqdngate's own queries.
				sources = [][]expr.Any{append(nfproto(target.Addr().Is6()),
					&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
					&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, s.Mark)})}
			} else {
				for _, p := range s.Clients {
					if p.Addr().Is6() == target.Addr().Is6() {
						sources = append(sources, matchPrefix(p, true))
					}
				}
			}
			for _, src := range sources {
				// Queries sent to fqdngate itself need no redirect and
				// are not counted as one.
				if !target.Addr().IsUnspecified() {
					src = append(src, notToAddr(target.Addr())...)
				}
				exprs := append(append(src, l4Port(proto, 53)...), counterRef(ctrDNSRedirects))
				exprs = append(exprs, natTo(target)...)
				cc.AddRule(&nftables.Rule{Table: t, Chain: nat, Exprs: exprs})
			}
		}
	}
}

func natTo(target netip.AddrPort) []expr.Any {
	port := binary.BigEndian.AppendUint16(nil, target.Port())
	if target.Addr().IsUnspecified() {
		return []expr.Any{
			&expr.Immediate{Register: regPort, Data: port},
			&expr.Redir{RegisterProtoMin: regPort},
		}
	}
	fam := uint32(unix.NFPROTO_IPV4)
	if target.Addr().Is6() {
		fam = unix.NFPROTO_IPV6
	}
	return []expr.Any{
		&expr.Immediate{Register: regAddr, Data: target.Addr().AsSlice()},
		&expr.Immediate{Register: regPort, Data: port},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: fam, RegAddrMin: regAddr, RegProtoMin: regPort, Specified: true},
	}
}

func pick(v6 bool, a, b string) string {
	if v6 {
		return a
	}
	return b
}

func accept_() expr.Any { return &expr.Verdict{Kind: expr.VerdictAccept} }

func nfproto(v6 bool) []expr.Any {
	fam := byte(unix.NFPROTO_IPV4)
	if v6 {
		fam = unix.NFPROTO_IPV6
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fam}},
	}
}

// matchPrefix matches the source (or destination) address against p.
func matchPrefix(p netip.Prefix, source bool) []expr.Any {
	v6 := p.Addr().Is6()
	off, n := addrField(v6, source)
	mask := netip.PrefixFrom(p.Addr(), p.Bits())
	maskBytes := prefixMask(mask)
	return append(nfproto(v6),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: maskBytes, Xor: make([]byte, n)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Masked().Addr().AsSlice()},
	)
}

// notToAddr matches packets not sent to a; the rule must have matched the
// address family before it.
func notToAddr(a netip.Addr) []expr.Any {
	off, n := addrField(a.Is6(), false)
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: a.AsSlice()},
	}
}

// addrField is where the source or destination address lies in the IPv4
// or IPv6 header, and its length.
func addrField(v6, source bool) (off, n uint32) {
	off, n = 12, 4
	if v6 {
		off, n = 8, 16
	}
	if !source {
		off += n
	}
	return off, n
}

func prefixMask(p netip.Prefix) []byte {
	n := p.Addr().BitLen() / 8
	b := make([]byte, n)
	for i := 0; i < p.Bits(); i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return b
}

func l4Port(proto byte, port uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, port)},
	}
}

// lookupKey loads [saddr .] daddr . l4proto . th dport into consecutive
// 32-bit registers and looks the concatenation up in set.
func lookupKey(v6, global bool, set string) []expr.Any {
	off, n := uint32(12), uint32(4)
	if v6 {
		off, n = 8, 16
	}
	regs := n / 4
	reg := uint32(reg32Base)
	exprs := nfproto(v6)
	if !global {
		exprs = append(exprs, &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n})
		reg += regs
	}
	exprs = append(exprs,
		&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off + n, Len: n},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg + regs},
		&expr.Payload{DestRegister: reg + regs + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: reg32Base, SetName: set},
	)
	return exprs
}

func ctStateEstablished() []expr.Any {
	state := uint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED)
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, state), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		accept_(),
	}
}

func metaIfname(key expr.MetaKey, name string) []expr.Any {
	b := make([]byte, 16)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b},
	}
}

// icmp6ND matches neighbour and router solicitation/advertisement, without
// which IPv6 on the host stops working.
func icmp6ND() []expr.Any {
	return append(nfproto(true),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMPV6}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: []byte{133}, ToData: []byte{136}},
	)
}

func logGroup(group uint16, prefix string) expr.Any {
	return &expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: group, Data: []byte(prefix)}
}

func counterRef(name string) expr.Any {
	return &expr.Objref{Type: int(nftables.ObjTypeCounter), Name: name}
}
