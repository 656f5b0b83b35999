package monitor

import (
	"container/list"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fqdngate/fqdngate/internal/policy"
)

// flowDropsLen bounds the remembered flow verdicts (section 11) that
// Explain reports for an address that is open.
const flowDropsLen = 4096

// Flow is the verdict on the name inside one flow (internal/verify).
type Flow struct {
	At           time.Time
	Client, Addr netip.Addr
	Port         uint16
	Reason       Reason
	Sent         string
	Answered     []string
	Message      string
}

// FlowDropped counts a flow dropped (or, would, let through in observe
// mode) for the name in it, records an event within the sampling budget
// and remembers it for Explain.
func (m *Monitor) FlowDropped(f Flow, would bool) Explanation {
	ex := Explanation{Reason: f.Reason, Client: f.Client, Addr: f.Addr, Port: policy.PortRange{Proto: unix.IPPROTO_TCP, Lo: f.Port, Hi: f.Port}.String(),
		Sent: f.Sent, Answered: f.Answered, Time: f.At, Message: f.Message}
	if would {
		m.wouldDrops[reasonIndex[ex.Reason]].Add(1)
	} else {
		m.drops[reasonIndex[ex.Reason]].Add(1)
	}
	m.flows.add(ex)
	if !m.sample(f.At) {
		m.sampled.Add(1)
		return ex
	}
	m.Events.Add(Event{Time: f.At, Kind: KindDrop, Client: f.Client, Name: f.Sent, Drop: &ex, WouldDrop: would})
	msg := "drop"
	if would {
		msg = "would drop"
	}
	m.log.Info(msg, "reason", ex.Reason, "client", f.Client, "dst", f.Addr, "port", ex.Port, "sent", f.Sent, "answered", f.Answered, "why", f.Message)
	return ex
}

// flowDrops remembers the newest flow verdict per client and address,
// bounded: the oldest give way.
type flowDrops struct {
	mu    sync.Mutex
	order *list.List
	by    map[[2]netip.Addr]*list.Element
}

func (d *flowDrops) add(ex Explanation) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.by == nil {
		d.by, d.order = make(map[[2]netip.Addr]*list.Element), list.New()
	}
	k := [2]netip.Addr{ex.Client, ex.Addr}
	if el, ok := d.by[k]; ok {
		el.Value = ex
		d.order.MoveToBack(el)
		return
	}
	if d.order.Len() >= flowDropsLen {
		old := d.order.Remove(d.order.Front()).(Explanation)
		delete(d.by, [2]netip.Addr{old.Client, old.Addr})
	}
	d.by[k] = d.order.PushBack(ex)
}

func (d *flowDrops) get(client, addr netip.Addr) (Explanation, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	el, ok := d.by[[2]netip.Addr{client, addr}]
	if !ok {
		return Explanation{}, false
	}
	return el.Value.(Explanation), true
}

// explainFlow reports the remembered flow verdict for an address that
// is open: the address passes, the name in the flow did not.
func (m *Monitor) explainFlow(ex Explanation) Explanation {
	if ex.Reason != Allowed {
		return ex
	}
	if f, ok := m.flows.get(ex.Client, ex.Addr); ok {
		return f
	}
	return ex
}
