package monitor

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Event kinds.
const (
	KindQuery = "query" // a DNS decision: allowed, denied, would-deny, refused, ...
	KindDrop  = "drop"  // a dropped (or would-be dropped) packet, attributed
)

// Event is one entry of the event log. Its JSON is the API's.
type Event struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	Kind string    `json:"kind"`
	// Query events.
	Decision string       `json:"decision,omitempty"`
	Client   netip.Addr   `json:"client,omitzero"`
	Group    string       `json:"group,omitempty"`
	Name     string       `json:"name,omitempty"`
	QType    string       `json:"qtype,omitempty"`
	Addrs    []netip.Addr `json:"addrs,omitempty"`
	Chain    []string     `json:"chain,omitempty"`
	// Drop events: the attribution; WouldDrop in observe mode.
	Drop      *Explanation `json:"drop,omitempty"`
	WouldDrop bool         `json:"would_drop,omitempty"`
}

// Ring is a bounded, in-memory event log: the newest Cap events, each
// with a sequence number so that a reader can ask for what came since.
type Ring struct {
	mu   sync.Mutex
	buf  []Event
	next uint64 // sequence number of the next event; the first is 1
	// dropSink, if set, hears every drop event (SetDropSink).
	dropSink atomic.Pointer[func(Event)]
}

// NewRing makes a ring holding up to capacity events.
func NewRing(capacity int) *Ring {
	return &Ring{buf: make([]Event, 0, capacity), next: 1}
}

// Add appends e, dropping the oldest event when full, and returns its
// sequence number.
func (r *Ring) Add(e Event) uint64 {
	seq := r.add(e)
	if sink := r.dropSink.Load(); sink != nil && e.Kind == KindDrop {
		e.Seq = seq
		(*sink)(e)
	}
	return seq
}

// SetDropSink hands every drop event added from now on to fn as well (a
// cluster's drops subject); fn must not block.
func (r *Ring) SetDropSink(fn func(Event)) { r.dropSink.Store(&fn) }

func (r *Ring) add(e Event) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.Seq = r.next
	r.next++
	if len(r.buf) < cap(r.buf) {
		r.buf = append(r.buf, e)
	} else {
		r.buf[int((e.Seq-1)%uint64(cap(r.buf)))] = e
	}
	return e.Seq
}

// Since returns up to limit events with a sequence number above seq,
// oldest first, and whether older ones than those returned were lost.
func (r *Ring) Since(seq uint64, limit int) (events []Event, lost bool) {
	events, _, lost = r.Select(seq, limit, EventFilter{})
	return events, lost
}

// EventFilter selects events; zero fields match everything.
type EventFilter struct {
	Kind   string
	Client netip.Addr
	// Name matches a query's name or a drop's name (normalised).
	Name string
	// Outcome matches a query's decision or a drop's reason.
	Outcome string
}

func (f EventFilter) matches(e *Event) bool {
	if f.Kind != "" && e.Kind != f.Kind || f.Client.IsValid() && e.Client != f.Client {
		return false
	}
	name, outcome := e.Name, e.Decision
	if e.Drop != nil {
		name, outcome = e.Drop.Name, string(e.Drop.Reason)
	}
	return (f.Name == "" || name == f.Name) && (f.Outcome == "" || outcome == f.Outcome)
}

// Select returns up to limit events after seq that match f, oldest first;
// next is the sequence number to ask after for the following ones (the
// last event looked at, matching or not), and lost tells whether events
// after seq were overwritten before they could be read. Only matching
// events are copied, and the lock is held for at most one pass over the
// ring.
func (r *Ring) Select(seq uint64, limit int, f EventFilter) (events []Event, next uint64, lost bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next = seq
	n := uint64(len(r.buf))
	if n == 0 {
		return nil, next, false
	}
	first := r.next - n // oldest sequence number held
	if seq+1 < first {
		lost = seq > 0 || first > 1
		seq = first - 1
	}
	for s := seq + 1; s < r.next && len(events) < limit; s++ {
		e := &r.buf[int((s-1)%uint64(cap(r.buf)))]
		next = s
		if f.matches(e) {
			events = append(events, *e)
		}
	}
	return events, next, lost
}
