package verify

import (
	"bytes"
	"cmp"
	"errors"
	"net/netip"
	"slices"
	"time"
)

// Bounds per flow while its first bytes are put together, and on the
// flows held at once.
const (
	// MaxSegments bounds the packets held for one flow (retransmissions
	// included).
	MaxSegments = 16
	// MaxWait bounds how long a flow's first packets are held.
	MaxWait = 3 * time.Second
	// MaxFlows bounds the flows whose packets are held at once, and
	// MaxFlowsPerClient those of one client: every held packet takes a
	// place in the kernel's queue (QueueLen), and one client must not
	// take them all. A packet beyond them is dropped, unjudged, and TCP
	// sends it again.
	MaxFlows          = 4096
	MaxFlowsPerClient = 64
	// StartWait bounds how long a flow's start (its SYN) is remembered
	// before its first byte comes; MaxStarts and MaxStartsPerClient
	// bound the starts remembered. A SYN beyond a client's bound is
	// dropped; beyond MaxStarts the oldest start is forgotten (its flow
	// is reset if it ever sends), so that a flood of handshakes that
	// never send does not keep the others' new flows out. A client is
	// an IPv4 address or an IPv6 /64.
	StartWait          = 2 * time.Minute
	MaxStarts          = 65536
	MaxStartsPerClient = 4096
)

// Errors of flows judged on what the assembler could not put together.
var (
	// ErrNoStart: the flow's SYN was not seen (fqdngate restarted, or
	// the flow sent nothing for StartWait), so where its bytes start is
	// not known, and bytes that seem first could be any.
	ErrNoStart = errors.New("the flow's SYN was not seen, so where its bytes start is not known")
	// ErrSegmentsDisagree: two segments carry different bytes for the
	// same place in the stream; the server may keep either.
	ErrSegmentsDisagree = errors.New("overlapping segments carry different bytes")
	// ErrTwoStarts: the flow sent SYNs with two first sequence numbers;
	// which one the server follows is not known.
	ErrTwoStarts = errors.New("the flow sent SYNs with two first sequence numbers")
)

// FlowKey is a TCP flow in the client's direction.
type FlowKey struct{ Src, Dst netip.AddrPort }

// segment is one held packet.
type segment struct {
	id   packetID
	seq  uint32
	data []byte
}

type held struct {
	since time.Time
	segs  []segment
	bytes int
	// start is the flow's first sequence number (one past its SYN's): a
	// segment that arrives before the first is held until the first
	// comes.
	start uint32
}

// flowStart is where a flow's bytes begin, from its SYN.
type flowStart struct {
	seq uint32
	at  time.Time
	n   uint64 // which Start made it, to tell it from a later one in the ring
	// twice: a SYN with another first sequence number came (ErrTwoStarts)
	twice bool
}

// perClient counts what one client has in the assembler.
type perClient struct{ starts, held int }

// Assembler holds the first payload packets of flows until their first
// bytes can be judged. Only a flow whose SYN it saw is put together: the
// SYN says where the bytes start, so a segment sent out of order cannot
// pass for the first. It is not safe for concurrent use: one queue
// reader owns it.
type Assembler struct {
	flows  map[FlowKey]*held
	starts map[FlowKey]flowStart
	// order holds the starts oldest first (a ring), for the one to
	// forget when MaxStarts is reached. It has room for twice as many,
	// so that a compaction (of the slots of starts forgotten since)
	// frees at least half of it.
	order      []orderSlot
	head, size int
	startN     uint64
	clients    map[netip.Addr]*perClient
	// inspect parses a flow's stream so far; ErrIncomplete asks for more.
	inspect func(k FlowKey, b []byte) error
}

// NewAssembler makes an assembler over inspect.
func NewAssembler(inspect func(k FlowKey, b []byte) error) *Assembler {
	return &Assembler{flows: make(map[FlowKey]*held), starts: make(map[FlowKey]flowStart),
		order: make([]orderSlot, 2*MaxStarts), clients: make(map[netip.Addr]*perClient), inspect: inspect}
}

type orderSlot struct {
	key FlowKey
	n   uint64
}

// clientOf is whom a flow's bounds count against: its IPv4 address, or
// the /64 of its IPv6 address (one host has a whole /64).
func clientOf(k FlowKey) netip.Addr {
	a := k.Src.Addr()
	if a.Is6() && !a.Is4In6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a.Unmap()
}

// Ready is a flow whose bytes are ready for a verdict: the held packet
// ids, the stream put together, and the parse error (ErrIncomplete when
// a bound cut it short).
type Ready struct {
	Key    FlowKey
	IDs    []packetID
	Stream []byte
	Err    error
}

// Outcome is what Add did with a packet.
type Outcome int

const (
	// Holding: the packet waits for more of its flow.
	Holding Outcome = iota
	// Judged: the flow is ready for a verdict.
	Judged
	// NoRoom: the packet was not held (the bounds); drop it unjudged.
	NoRoom
)

// Add holds packet id (TCP sequence number seq, payload data) of flow k.
// It returns the flow when it is ready for a verdict.
func (a *Assembler) Add(now time.Time, k FlowKey, id packetID, seq uint32, data []byte) (Ready, Outcome) {
	h := a.flows[k]
	if h == nil {
		st, ok := a.starts[k]
		if !ok || st.twice {
			err := ErrNoStart
			if ok {
				err = ErrTwoStarts
				a.Forget(k)
			}
			stream := clone(data)
			return Ready{Key: k, IDs: []packetID{id}, Stream: stream, Err: err}, Judged
		}
		c := a.clients[clientOf(k)]
		if len(a.flows) >= MaxFlows || c.held >= MaxFlowsPerClient {
			return Ready{}, NoRoom
		}
		h = &held{since: now, start: st.seq}
		a.flows[k] = h
		c.held++
	}
	if !h.agrees(seq, data) {
		ids := append(h.ids(), id)
		stream := h.stream()
		a.Forget(k)
		return Ready{Key: k, IDs: ids, Stream: stream, Err: ErrSegmentsDisagree}, Judged
	}
	h.segs = append(h.segs, segment{id: id, seq: seq, data: clone(data)})
	h.bytes += len(data)
	stream := h.stream()
	err := a.inspect(k, stream)
	if err == ErrIncomplete && len(h.segs) < MaxSegments && h.bytes < MaxHelloBytes {
		return Ready{}, Holding
	}
	ids := h.ids()
	a.Forget(k)
	return Ready{Key: k, IDs: ids, Stream: stream, Err: err}, Judged
}

// Start notes where flow k's bytes begin (one past its SYN's sequence
// number). A flow held on the same 4-tuple before is another flow: the
// ids of its held packets are returned, for the caller to drop. ok is
// false when there is no room (MaxStarts, MaxStartsPerClient).
func (a *Assembler) Start(now time.Time, k FlowKey, seq uint32) (dropped []packetID, ok bool) {
	dropped = a.Forget(k)
	who := clientOf(k)
	c := a.client(who)
	if c.starts >= MaxStartsPerClient {
		a.release(who)
		return dropped, false
	}
	for len(a.starts) >= MaxStarts {
		dropped = append(dropped, a.forgetOldest()...)
	}
	if a.size == len(a.order) {
		a.compact()
	}
	a.startN++
	a.starts[k] = flowStart{seq: seq, at: now, n: a.startN}
	a.order[(a.head+a.size)%len(a.order)] = orderSlot{k, a.startN}
	a.size++
	// Looked up again: forgetting the oldest may have released it.
	a.client(who).starts++
	return dropped, true
}

// forgetOldest forgets the oldest start that is still remembered, and
// what its flow holds.
func (a *Assembler) forgetOldest() []packetID {
	for a.size > 0 {
		o := a.order[a.head]
		a.head = (a.head + 1) % len(a.order)
		a.size--
		if st, ok := a.starts[o.key]; ok && st.n == o.n {
			return a.Forget(o.key)
		}
	}
	return nil
}

// compact drops from the ring the slots of starts already forgotten;
// Start calls it when the ring is full, which, with room for twice
// MaxStarts, is at most once every MaxStarts starts.
func (a *Assembler) compact() {
	live := make([]orderSlot, 0, len(a.starts))
	for i := range a.size {
		o := a.order[(a.head+i)%len(a.order)]
		if st, ok := a.starts[o.key]; ok && st.n == o.n {
			live = append(live, o)
		}
	}
	clear(a.order)
	a.head, a.size = 0, copy(a.order, live)
}

// Forget drops what is known of k and returns the ids of its held
// packets.
func (a *Assembler) Forget(k FlowKey) []packetID {
	var ids []packetID
	who := clientOf(k)
	c := a.clients[who]
	if h, ok := a.flows[k]; ok {
		ids = h.ids()
		delete(a.flows, k)
		c.held--
	}
	if _, ok := a.starts[k]; ok {
		delete(a.starts, k)
		c.starts--
	}
	a.release(who)
	return ids
}

func (a *Assembler) client(addr netip.Addr) *perClient {
	c := a.clients[addr]
	if c == nil {
		c = &perClient{}
		a.clients[addr] = c
	}
	return c
}

// release forgets a client that has nothing left here.
func (a *Assembler) release(addr netip.Addr) {
	if c := a.clients[addr]; c != nil && c.starts == 0 && c.held == 0 {
		delete(a.clients, addr)
	}
}

// Expire returns the flows held longer than MaxWait, now ready for a
// verdict on what they sent, and forgets the starts of flows that sent
// nothing for StartWait.
func (a *Assembler) Expire(now time.Time) []Ready {
	var out []Ready
	for k, h := range a.flows {
		if now.Sub(h.since) < MaxWait {
			continue
		}
		stream := h.stream()
		err := a.inspect(k, stream)
		if err == nil {
			err = ErrIncomplete
		}
		out = append(out, Ready{Key: k, IDs: a.Forget(k), Stream: stream, Err: err})
	}
	for k, st := range a.starts {
		if _, holding := a.flows[k]; !holding && now.Sub(st.at) >= StartWait {
			a.Forget(k)
		}
	}
	return out
}

// AnotherSYN notes a SYN of flow k that is not the one that made it,
// with sequence number seq. One with another first sequence number than
// the flow's start (conntrack takes it before the server has answered,
// and the first may never have reached the server) leaves the flow
// without a start the server is known to follow: its bytes are judged
// on ErrTwoStarts, at once when some are held (ok).
func (a *Assembler) AnotherSYN(k FlowKey, seq uint32) (Ready, bool) {
	st, known := a.starts[k]
	if !known || st.seq == seq+1 || st.twice {
		return Ready{}, false
	}
	if h := a.flows[k]; h != nil {
		ids := h.ids()
		stream := h.stream()
		a.Forget(k)
		return Ready{Key: k, IDs: ids, Stream: stream, Err: ErrTwoStarts}, true
	}
	st.twice = true
	a.starts[k] = st
	return Ready{}, false
}

// Held is the number of flows waiting.
func (a *Assembler) Held() int { return len(a.flows) }

// Starts is the number of flows whose start is remembered.
func (a *Assembler) Starts() int { return len(a.starts) }

// agrees reports whether data at seq carries the same bytes as every
// held segment where they overlap. A receiver keeps one of two
// different versions (Linux, of segments out of order, the later when
// it covers the earlier), so the bytes judged could be those it drops.
func (h *held) agrees(seq uint32, data []byte) bool {
	off := int64(int32(seq - h.start))
	for _, s := range h.segs {
		so := int64(int32(s.seq - h.start))
		lo, hi := max(off, so), min(off+int64(len(data)), so+int64(len(s.data)))
		if lo < hi && !bytes.Equal(data[lo-off:hi-off], s.data[lo-so:hi-so]) {
			return false
		}
	}
	return true
}

func (h *held) ids() []packetID {
	ids := make([]packetID, len(h.segs))
	for i, s := range h.segs {
		ids[i] = s.id
	}
	return ids
}

// stream puts the held segments together in sequence order from the
// flow's start, up to the first gap; retransmitted and overlapping bytes
// are taken once (they agree: agrees), bytes before the start are not
// taken. Sequence numbers are compared relative to the start, so a wrap
// of the 32-bit space does not reorder them.
func (h *held) stream() []byte {
	base := h.start
	segs := slices.Clone(h.segs)
	slices.SortStableFunc(segs, func(x, y segment) int {
		return cmp.Compare(int32(x.seq-base), int32(y.seq-base))
	})
	var out []byte
	next := base
	for _, s := range segs {
		off := int32(next - s.seq)
		switch {
		case off < 0:
			return out // a gap: the missing bytes are still on the way
		case int(off) < len(s.data):
			out = append(out, s.data[off:]...)
			next = s.seq + uint32(len(s.data))
		}
	}
	return out
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// verdicts remembers the verdicts of flows judged in the last MaxWait,
// so that a packet queued before its flow's verdict took effect (a
// retransmission, a tail loss probe of the ClientHello's last segment)
// gets the flow's verdict rather than one of its own on bytes that are
// not a flow's first. It keeps at most max, dropping the oldest first:
// such a packet was already in the queue when the verdict was set, and
// the queue holds QueueLen packets, so it comes within the next QueueLen
// verdicts. Dropping new verdicts instead once full, at some thousands
// of new flows a second, reset flows whose last segment was sent twice.
type verdicts struct {
	m    map[FlowKey]decision
	ring []ringSlot
	pos  int
	n    uint64
}

type decision struct {
	at   time.Time
	mark uint32
	n    uint64 // which remember set it, to tell it from a later one on the same key
}

type ringSlot struct {
	key FlowKey
	n   uint64
}

func newVerdicts(max int) *verdicts {
	return &verdicts{m: make(map[FlowKey]decision, max), ring: make([]ringSlot, max)}
}

func (v *verdicts) remember(now time.Time, k FlowKey, mark uint32) {
	v.n++
	old := v.ring[v.pos]
	if d, ok := v.m[old.key]; ok && d.n == old.n {
		delete(v.m, old.key)
	}
	v.ring[v.pos] = ringSlot{key: k, n: v.n}
	v.pos = (v.pos + 1) % len(v.ring)
	v.m[k] = decision{at: now, mark: mark, n: v.n}
}

func (v *verdicts) lookup(k FlowKey) (uint32, bool) {
	d, ok := v.m[k]
	return d.mark, ok
}

func (v *verdicts) forget(k FlowKey) { delete(v.m, k) }

// expire forgets the verdicts older than MaxWait.
func (v *verdicts) expire(now time.Time) {
	for k, d := range v.m {
		if now.Sub(d.at) >= MaxWait {
			delete(v.m, k)
		}
	}
}

func (v *verdicts) len() int { return len(v.m) }
