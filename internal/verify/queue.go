package verify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/fqdngate/fqdngate/internal/enforce"
	"github.com/fqdngate/fqdngate/internal/monitor"
)

// QueueLen bounds the packets the kernel holds for fqdngate. When it is
// full the kernel drops the next (no fail-open flag): TCP retransmits
// them, so a burst of new flows is slowed, never let through unjudged.
const QueueLen = 1024

// Queue reads the first payload packets of new flows on verified ports
// from NFQUEUE and sets their verdict.
type Queue struct {
	Num   uint16
	Judge *Judge
	// Observe: a mismatch is logged and counted, the flow goes on.
	Observe bool
	Monitor *monitor.Monitor
	Now     func() time.Time
	Log     *slog.Logger

	mu  sync.Mutex
	asm *Assembler
	// decided are the flows judged in the last MaxWait, with their mark.
	decided *verdicts
	nf      *nfqueue.Nfqueue

	passed, unverified, dropped, errs atomic.Uint64
	// full counts packets dropped unjudged for want of room (Assembler's
	// bounds).
	full atomic.Uint64
}

// Stats are the queue's counters.
type Stats struct{ Passed, Unverified, Dropped, Errors uint64 }

// Stats reports flows passed, passed unverified (verify: false) and
// dropped (would-drops in observe mode count as passed), and verdicts
// the kernel refused.
func (q *Queue) Stats() Stats {
	return Stats{Passed: q.passed.Load(), Unverified: q.unverified.Load(), Dropped: q.dropped.Load(), Errors: q.errs.Load()}
}

func (q *Queue) held() (held, starts int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.asm == nil {
		return 0, 0
	}
	return q.asm.Held(), q.asm.Starts()
}

// Start subscribes to the queue and judges packets until ctx ends. It
// returns once subscribed, or with what kept it from subscribing.
func (q *Queue) Start(ctx context.Context) error {
	if q.Now == nil {
		q.Now = time.Now
	}
	if q.Log == nil {
		q.Log = slog.New(slog.DiscardHandler)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.decided = newVerdicts(MaxFlows)
	q.asm = NewAssembler(func(k FlowKey, b []byte) error {
		_, _, err := q.Judge.Inspect(k.Dst.Port(), b)
		return err
	})
	cfg := &nfqueue.Config{
		NfQueue:      q.Num,
		MaxPacketLen: 0xffff,
		MaxQueueLen:  QueueLen,
		Copymode:     nfqueue.NfQnlCopyPacket,
		WriteTimeout: time.Second,
		// GSO: a ClientHello the client wrote at once comes as one
		// packet, not cut into its segments first, so it costs one
		// verdict. Its checksum may not be filled in yet; it is not
		// read.
		Flags: nfqueue.NfQaCfgFlagGSO,
	}
	if q.Observe {
		// Observe never blocks: a packet that finds the queue full goes
		// on unjudged. Enforcing, it is dropped and TCP sends it again.
		cfg.Flags |= nfqueue.NfQaCfgFlagFailOpen
	}
	nf, err := nfqueue.Open(cfg)
	if err != nil {
		return fmt.Errorf("nfqueue %d: %w", q.Num, err)
	}
	// The kernel's ENOBUFS (our socket buffer overran) is reported as an
	// error and reading goes on; the packets it concerns stay queued.
	_ = nf.SetOption(netlink.NoENOBUFS, true)
	q.nf = nf
	errfn := func(err error) int {
		if ctx.Err() != nil {
			return 1
		}
		q.errs.Add(1)
		return 0
	}
	if err := nf.RegisterWithErrorFunc(ctx, q.packet, errfn); err != nil {
		nf.Close()
		return fmt.Errorf("nfqueue %d: %w", q.Num, err)
	}
	go func() {
		defer nf.Close()
		t := time.NewTicker(MaxWait / 4)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				q.mu.Lock()
				now := q.Now()
				for _, r := range q.asm.Expire(now) {
					q.decide(r)
				}
				q.decided.expire(now)
				q.mu.Unlock()
			}
		}
	}()
	return nil
}

func (q *Queue) packet(a nfqueue.Attribute) int {
	if a.PacketID == nil {
		return 0
	}
	id := *a.PacketID
	var pkt []byte
	if a.Payload != nil {
		pkt = *a.Payload
	}
	var mark uint32
	if a.Mark != nil {
		mark = *a.Mark
	}
	t, err := decodeTCP(pkt)
	if err != nil {
		// A packet of a flow on a verified port that cannot be read as
		// TCP (IPv6 extension headers before it, say) could carry the
		// flow's first bytes: fail closed.
		q.unjudged(id, mark)
		return 0
	}
	if t.syn {
		q.syn(id, mark, t)
		return 0
	}
	if len(t.data) == 0 {
		// A FIN or RST of a pending flow: it carries no first bytes to
		// judge, so it passes and the flow stays pending.
		q.pass(id, mark)
		return 0
	}
	if t.rst || t.urg {
		// Bytes that a receiver does not read as the stream's (an RST's
		// payload; with URG, Linux takes the urgent byte out of it) must
		// not be judged as its first bytes. No client sends them in a
		// ClientHello or a request head.
		q.unjudged(id, mark)
		return 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if m, ok := q.decided.lookup(t.key); ok {
		q.verdict(id, nfqueue.NfRepeat, mark&^enforce.CtMask|m)
		return 0
	}
	switch r, out := q.asm.Add(q.Now(), t.key, packetID{id, mark}, t.seq, t.data); out {
	case Judged:
		q.decide(r)
	case NoRoom:
		q.full.Add(1)
		q.unjudged(id, mark)
	}
	return 0
}

// syn handles a SYN. The one that made the flow's conntrack entry comes
// from the table's check chain, which tags its packet mark CtPending:
// it starts a new flow, perhaps on the 4-tuple of one just judged (a
// client may reuse its port at once after a reset), so what was decided
// or held for the old one must not carry over, or a flow with an allowed
// name would let the next one on the same port through unjudged. Any
// other SYN of a pending flow is not where its bytes start (the server
// ignores it) and moves nothing. A SYN's own bytes (TCP Fast Open) are
// not judged: it is dropped, and the client sends its SYN again without
// them.
func (q *Queue) syn(id, mark uint32, t tcpPacket) {
	creating := !t.ack && mark&enforce.CtMask == enforce.CtPending
	if !creating {
		if !t.ack {
			q.anotherSYN(t)
		}
		if len(t.data) > 0 {
			q.unjudged(id, mark)
			return
		}
		q.pass(id, mark)
		return
	}
	q.mu.Lock()
	q.decided.forget(t.key)
	held, ok := q.asm.Start(q.Now(), t.key, t.seq+1) // the SYN takes one sequence number
	q.mu.Unlock()
	for _, p := range held {
		q.verdict(p.id, nfqueue.NfDrop, 0)
	}
	if !ok {
		q.full.Add(1)
	}
	if !ok || len(t.data) > 0 {
		q.unjudged(id, mark)
		return
	}
	// The tag is taken off the packet; its flow keeps CtPending.
	q.pass(id, mark)
}

// anotherSYN: a SYN of a pending flow that did not make it (Assembler's
// AnotherSYN).
func (q *Queue) anotherSYN(t tcpPacket) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if r, ok := q.asm.AnotherSYN(t.key, t.seq); ok {
		q.decide(r)
	}
}

// unjudged is the verdict of a packet that is not judged: enforcing, it
// is dropped and TCP sends it again; observing, it goes on (observe
// drops nothing).
func (q *Queue) unjudged(id, mark uint32) {
	if q.Observe {
		q.pass(id, mark)
		return
	}
	q.verdict(id, nfqueue.NfDrop, 0)
}

// decide judges a flow that is ready and sets the verdict of each of
// its held packets. A rejected flow's last packet is repeated through
// the hook, where its new mark answers it with a TCP reset.
func (q *Queue) decide(r Ready) {
	port := r.Key.Dst.Port()
	name, ech, _ := q.Judge.Inspect(port, r.Stream)
	now := q.Now()
	v := q.Judge.Decide(now, r.Key.Src.Addr(), r.Key.Dst.Addr(), port, name, ech, r.Err)
	if r.Err != nil {
		v.Message += fmt.Sprintf(" (%d bytes in %d packets, starting %x)", len(r.Stream), len(r.IDs), r.Stream[:min(len(r.Stream), 8)])
	}
	if !v.Pass && q.Monitor != nil {
		q.Monitor.FlowDropped(monitor.Flow{At: now, Client: r.Key.Src.Addr().Unmap(), Addr: r.Key.Dst.Addr().Unmap(), Port: port,
			Reason: v.Reason, Sent: v.Sent, Answered: v.Answered, Message: v.Message}, q.Observe)
	}
	verdict := enforce.CtRejected
	if v.Pass || q.Observe {
		verdict = enforce.CtVerified
	}
	q.decided.remember(now, r.Key, verdict)
	if v.Pass || q.Observe {
		if v.Unverified {
			q.unverified.Add(1)
		} else {
			q.passed.Add(1)
		}
		for _, p := range r.IDs {
			q.verdict(p.id, nfqueue.NfRepeat, p.mark&^enforce.CtMask|enforce.CtVerified)
		}
		return
	}
	q.dropped.Add(1)
	for i, p := range r.IDs {
		if i < len(r.IDs)-1 {
			q.verdict(p.id, nfqueue.NfDrop, 0)
			continue
		}
		q.verdict(p.id, nfqueue.NfRepeat, p.mark&^enforce.CtMask|enforce.CtRejected)
	}
}

// packetID is a queued packet: its id and its mark when it came.
type packetID struct{ id, mark uint32 }

// verdict sets a packet's verdict and, when mark is not zero, its mark,
// which the table copies to the flow's conntrack mark when the packet
// is repeated through the hook (enforce/verify.go).
func (q *Queue) verdict(id uint32, verdict int, mark uint32) {
	if mark != 0 {
		q.verdictMark(id, verdict, mark)
		return
	}
	q.report(id, q.nf.SetVerdict(id, verdict))
}

// pass accepts a packet that tells the verdict nothing, taking off the
// tag of the check chain (enforce/verify.go) if it has one.
func (q *Queue) pass(id, mark uint32) {
	if mark&enforce.CtMask != 0 {
		q.verdictMark(id, nfqueue.NfAccept, mark&^enforce.CtMask)
		return
	}
	q.verdict(id, nfqueue.NfAccept, 0)
}

// verdictMark sets a packet's verdict and its mark, zero included.
func (q *Queue) verdictMark(id uint32, verdict int, mark uint32) {
	q.report(id, q.nf.SetVerdictWithMark(id, verdict, int(mark)))
}

func (q *Queue) report(id uint32, err error) {
	if err != nil {
		q.errs.Add(1)
		q.Log.Warn("nfqueue verdict", "id", id, "err", err)
	}
}

// tcpPacket is what a queued packet says about its flow.
type tcpPacket struct {
	key  FlowKey
	seq  uint32
	data []byte
	// ack: the ACK flag; syn, rst, urg: those flags.
	ack, syn, rst, urg bool
}

var errNotTCP = errors.New("not a TCP packet")

// decodeTCP reads an IPv4 or IPv6 packet's addresses and its TCP ports,
// sequence number and payload.
func decodeTCP(b []byte) (tcpPacket, error) {
	var p tcpPacket
	if len(b) < 1 {
		return p, errNotTCP
	}
	var src, dst netip.Addr
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		h, err := ipv4.ParseHeader(b)
		if err == nil && h.TotalLen == 0 {
			// A GSO packet over 64 KiB (BIG TCP) has no IP length:
			// its bytes are what was copied.
			h.TotalLen = len(b)
		}
		if err != nil || h.Protocol != unix.IPPROTO_TCP || h.FragOff != 0 || h.Len < ipv4.HeaderLen || h.TotalLen > len(b) || h.TotalLen < h.Len {
			return p, errNotTCP
		}
		src, _ = netip.AddrFromSlice(h.Src.To4())
		dst, _ = netip.AddrFromSlice(h.Dst.To4())
		l4 = b[h.Len:h.TotalLen]
	case 6:
		h, err := ipv6.ParseHeader(b)
		if err == nil && h.PayloadLen == 0 {
			h.PayloadLen = len(b) - ipv6.HeaderLen // BIG TCP, as above
		}
		if err != nil || h.NextHeader != unix.IPPROTO_TCP || ipv6.HeaderLen+h.PayloadLen > len(b) {
			return p, errNotTCP
		}
		src, _ = netip.AddrFromSlice(h.Src)
		dst, _ = netip.AddrFromSlice(h.Dst)
		l4 = b[ipv6.HeaderLen : ipv6.HeaderLen+h.PayloadLen]
	default:
		return p, errNotTCP
	}
	s := cryptobyte.String(l4)
	var sport, dport uint16
	var ack uint32
	var off, flags uint8
	if !s.ReadUint16(&sport) || !s.ReadUint16(&dport) || !s.ReadUint32(&p.seq) || !s.ReadUint32(&ack) || !s.ReadUint8(&off) || !s.ReadUint8(&flags) {
		return p, errNotTCP
	}
	hl := int(off>>4) * 4
	if hl < 20 || hl > len(l4) {
		return p, errNotTCP
	}
	p.key = FlowKey{netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)}
	p.data = l4[hl:]
	p.syn, p.rst, p.ack, p.urg = flags&0x02 != 0, flags&0x04 != 0, flags&0x10 != 0, flags&0x20 != 0
	return p, nil
}
