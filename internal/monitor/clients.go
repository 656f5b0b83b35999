package monitor

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/fqdngate/fqdngate/internal/dnsproxy"
)

// maxClients bounds the clients remembered for the console; beyond it new
// clients are counted, not kept. Refused sources are kept too (who is
// talking to a resolver it may not use is worth seeing), so a spoofing
// flood fills the table and stops there.
const maxClients = 16384

// ClientSeen is what the console shows of one client.
type ClientSeen struct {
	Addr  netip.Addr `json:"addr"`
	Group string     `json:"group"`
	// Queries counts every query; Denied the denied and would-deny ones.
	Queries uint64    `json:"queries"`
	Denied  uint64    `json:"denied"`
	First   time.Time `json:"first"`
	Last    time.Time `json:"last"`
}

type clientTally struct {
	mu      sync.Mutex
	clients map[netip.Addr]*ClientSeen
	dropped uint64
}

func (t *clientTally) add(o dnsproxy.Outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.clients == nil {
		t.clients = make(map[netip.Addr]*ClientSeen)
	}
	c, ok := t.clients[o.Client]
	if !ok {
		if len(t.clients) >= maxClients {
			t.dropped++
			return
		}
		c = &ClientSeen{Addr: o.Client, First: o.Time}
		t.clients[o.Client] = c
	}
	// The group of the latest query: a reload may move a client.
	c.Group = o.Group
	c.Queries++
	if o.Decision == dnsproxy.DecisionDenied || o.Decision == dnsproxy.DecisionWouldDeny {
		c.Denied++
	}
	c.Last = o.Time
}

// Clients lists the clients that asked, by address, and how many more
// were not kept for the bound.
func (m *Monitor) Clients() (clients []ClientSeen, notKept uint64) {
	t := &m.clients
	t.mu.Lock()
	out := make([]ClientSeen, 0, len(t.clients))
	for _, c := range t.clients {
		out = append(out, *c)
	}
	notKept = t.dropped
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b ClientSeen) int { return a.Addr.Compare(b.Addr) })
	return out, notKept
}
