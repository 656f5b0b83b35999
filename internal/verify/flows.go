package verify

import (
	"cmp"
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
	// MaxFlows bounds the flows held at once; a new flow beyond it is
	// judged on what its first packet holds.
	MaxFlows = 4096
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
	// start is the flow's first sequence number, when its SYN was seen:
	// a segment that arrives before the first is then held
	// until the first comes.
	start    uint32
	hasStart bool
}

// Assembler holds the first payload packets of flows until their first
// bytes can be judged. It is not safe for concurrent use: one queue
// reader owns it.
type Assembler struct {
	flows map[FlowKey]*held
	// inspect parses a flow's stream so far; ErrIncomplete asks for more.
	inspect func(k FlowKey, b []byte) error
}

// NewAssembler makes an assembler over inspect.
func NewAssembler(inspect func(k FlowKey, b []byte) error) *Assembler {
	return &Assembler{flows: make(map[FlowKey]*held), inspect: inspect}
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

// Add holds packet id (TCP sequence number seq, payload data) of flow k.
// It returns the flow when it is ready for a verdict; otherwise the
// packet waits.
func (a *Assembler) Add(now time.Time, k FlowKey, id packetID, seq uint32, data []byte) (Ready, bool) {
	h := a.flows[k]
	if h == nil {
		if len(a.flows) >= MaxFlows {
			stream := clone(data)
			return Ready{Key: k, IDs: []packetID{id}, Stream: stream, Err: a.inspect(k, stream)}, true
		}
		h = &held{since: now}
		a.flows[k] = h
	}
	h.segs = append(h.segs, segment{id: id, seq: seq, data: clone(data)})
	h.bytes += len(data)
	stream := h.stream()
	err := a.inspect(k, stream)
	if err == ErrIncomplete && len(h.segs) < MaxSegments && h.bytes < MaxHelloBytes {
		return Ready{}, false
	}
	delete(a.flows, k)
	return Ready{Key: k, IDs: h.ids(), Stream: stream, Err: err}, true
}

// Start notes where flow k's bytes begin (one past its SYN's sequence
// number), within MaxFlows.
func (a *Assembler) Start(now time.Time, k FlowKey, seq uint32) {
	if _, ok := a.flows[k]; ok || len(a.flows) >= MaxFlows {
		return
	}
	a.flows[k] = &held{since: now, start: seq, hasStart: true}
}

// Forget drops what is held for k: a SYN on k starts another flow, whose
// bytes begin elsewhere.
func (a *Assembler) Forget(k FlowKey) { delete(a.flows, k) }

// Expire returns the flows held longer than MaxWait, now ready for a
// verdict on what they sent.
func (a *Assembler) Expire(now time.Time) []Ready {
	var out []Ready
	for k, h := range a.flows {
		if now.Sub(h.since) < MaxWait {
			continue
		}
		delete(a.flows, k)
		if len(h.segs) == 0 {
			continue // only its start was seen
		}
		stream := h.stream()
		err := a.inspect(k, stream)
		if err == nil {
			err = ErrIncomplete
		}
		out = append(out, Ready{Key: k, IDs: h.ids(), Stream: stream, Err: err})
	}
	return out
}

// Held is the number of flows waiting.
func (a *Assembler) Held() int { return len(a.flows) }

func (h *held) ids() []packetID {
	ids := make([]packetID, len(h.segs))
	for i, s := range h.segs {
		ids[i] = s.id
	}
	return ids
}

// stream puts the held segments together in sequence order from the
// lowest, up to the first gap; retransmitted and overlapping bytes are
// taken once. Sequence numbers are compared relative to the first
// segment held, so a wrap of the 32-bit space does not reorder them.
func (h *held) stream() []byte {
	base := h.start
	if !h.hasStart {
		base = h.segs[0].seq
	}
	segs := slices.Clone(h.segs)
	slices.SortStableFunc(segs, func(x, y segment) int {
		return cmp.Compare(int32(x.seq-base), int32(y.seq-base))
	})
	var out []byte
	next := base
	if !h.hasStart {
		next = segs[0].seq
	}
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
