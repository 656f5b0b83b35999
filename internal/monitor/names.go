package monitor

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/fqdngate/fqdngate/internal/dnsproxy"
)

// maxNames bounds the names remembered for `fqdngate suggest`; beyond it
// new names are counted, not kept.
const maxNames = 10000

// NameSeen is one name clients asked for. Its JSON is the API's.
type NameSeen struct {
	Name    string `json:"name"`
	Queries uint64 `json:"queries"`
	Clients int    `json:"clients"`
	// ClientAddrs are the clients that asked (at most 256 kept).
	ClientAddrs []netip.Addr `json:"client_addrs"`
	First       time.Time    `json:"first"`
	Last        time.Time    `json:"last"`
	// Decision is the last one: allowed, denied, would-deny.
	Decision string `json:"decision"`
}

type nameTally struct {
	mu      sync.Mutex
	names   map[string]*nameEntry
	dropped uint64
}

type nameEntry struct {
	NameSeen
	clients map[netip.Addr]struct{}
}

// maxClientsPerName bounds the clients remembered per name.
const maxClientsPerName = 256

func (t *nameTally) add(o dnsproxy.Outcome, name string) {
	switch o.Decision {
	case dnsproxy.DecisionAllowed, dnsproxy.DecisionDenied, dnsproxy.DecisionWouldDeny:
	default:
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.names == nil {
		t.names = make(map[string]*nameEntry)
	}
	e, ok := t.names[name]
	if !ok {
		if len(t.names) >= maxNames {
			t.dropped++
			return
		}
		e = &nameEntry{NameSeen: NameSeen{Name: name, First: o.Time}, clients: make(map[netip.Addr]struct{})}
		t.names[name] = e
	}
	e.Queries++
	e.Last = o.Time
	e.Decision = o.Decision
	if len(e.clients) < maxClientsPerName {
		e.clients[o.Client] = struct{}{}
	}
}

// Names lists the names clients asked for, most asked first.
func (m *Monitor) Names() []NameSeen {
	t := &m.names
	t.mu.Lock()
	out := make([]NameSeen, 0, len(t.names))
	for _, e := range t.names {
		n := e.NameSeen
		n.Clients = len(e.clients)
		for c := range e.clients {
			n.ClientAddrs = append(n.ClientAddrs, c)
		}
		slices.SortFunc(n.ClientAddrs, netip.Addr.Compare)
		out = append(out, n)
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b NameSeen) int {
		if c := cmp.Compare(b.Queries, a.Queries); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return out
}
