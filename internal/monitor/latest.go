package monitor

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// latestDropsMax bounds the latest-drop record: one entry per (client,
// address) pair, the least recently dropped pair forgotten first. A flood
// of drops to fresh addresses costs this many entries, no more.
const latestDropsMax = 4096

// LatestDrop is the last attributed drop of packets from a client to an
// address: when, whether it was only a would-drop (observe), and the
// explanation it got then (reason, port, names).
type LatestDrop struct {
	Time      time.Time `json:"time"`
	WouldDrop bool      `json:"would_drop,omitempty"`
	Explanation
}

type dropKey struct{ client, addr netip.Addr }

// LatestDrops remembers the latest drop per (client, address), for
// explanations asked without a port: every attributed drop is recorded,
// sampled into the events or not.
type LatestDrops struct {
	max int

	mu    sync.Mutex
	pairs map[dropKey]*list.Element
	lru   list.List // of *latestEntry, most recent at the front
}

type latestEntry struct {
	key  dropKey
	drop LatestDrop
}

// NewLatestDrops makes a record of at most max pairs.
func NewLatestDrops(max int) *LatestDrops {
	return &LatestDrops{max: max, pairs: make(map[dropKey]*list.Element)}
}

// Add records a drop explained as ex at t.
func (l *LatestDrops) Add(t time.Time, would bool, ex Explanation) {
	k := dropKey{ex.Client.Unmap(), ex.Addr.Unmap()}
	d := LatestDrop{Time: t.UTC(), WouldDrop: would, Explanation: ex}
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.pairs[k]; ok {
		el.Value.(*latestEntry).drop = d
		l.lru.MoveToFront(el)
		return
	}
	if l.lru.Len() >= l.max {
		// The pair dropped longest ago gives its place: a flood of fresh
		// addresses allocates nothing once the record is full.
		old := l.lru.Back()
		e := old.Value.(*latestEntry)
		delete(l.pairs, e.key)
		e.key, e.drop = k, d
		l.lru.MoveToFront(old)
		l.pairs[k] = old
		return
	}
	l.pairs[k] = l.lru.PushFront(&latestEntry{key: k, drop: d})
}

// Get returns the latest drop from client to addr, if one is remembered.
func (l *LatestDrops) Get(client, addr netip.Addr) (LatestDrop, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.pairs[dropKey{client.Unmap(), addr.Unmap()}]
	if !ok {
		return LatestDrop{}, false
	}
	return el.Value.(*latestEntry).drop, true
}

// Len is the number of pairs remembered.
func (l *LatestDrops) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

// ExplainLatest is an explanation asked without a port: what is open now
// for client (invalid: whoever last got addr) and, if the client's
// packets to addr were dropped, the latest such drop. Without it, a drop
// on a port the rule does not have would be answered "allowed".
func (m *Monitor) ExplainLatest(client, addr netip.Addr) (Explanation, *LatestDrop) {
	ex := m.Explain(client, addr, 0, 0)
	if !ex.Client.IsValid() {
		return ex, nil
	}
	d, ok := m.Latest.Get(ex.Client, addr)
	if !ok {
		return ex, nil
	}
	return ex, &d
}
