package cluster

import (
	"net/url"
	"slices"
)

// PeerState is one source of other nodes' answers, for status pages.
type PeerState struct {
	// Name is the route (embedded) or "nats" (a shared system), without
	// credentials.
	Name     string   `json:"name"`
	Up       bool     `json:"up"`
	CaughtUp bool     `json:"caught_up"`
	Nodes    []string `json:"nodes"`
	// Applied counts the records read from this source and judged.
	Applied uint64 `json:"records"`
}

// Status is the node's view of its site.
type Status struct {
	Site     string      `json:"site"`
	Node     string      `json:"node"`
	Embedded bool        `json:"embedded"`
	Ready    bool        `json:"caught_up"`
	Peers    []PeerState `json:"peers"`
}

// Status reports the node and its peers.
func (n *Node) Status() Status {
	ok, _ := n.Ready()
	return Status{Site: n.cfg.Site, Node: n.cfg.Node, Embedded: n.cfg.Embedded, Ready: ok, Peers: n.peerStates()}
}

func (n *Node) peerStates() []PeerState {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]PeerState, 0, len(n.sources))
	for _, s := range n.sources {
		ok, _ := s.caughtUp()
		ps := PeerState{Name: redact(s.name), Up: s.conn.IsConnected(), CaughtUp: ok}
		if s.shared {
			ps.Name = "nats"
		}
		s.mu.Lock()
		for _, f := range s.followers {
			ps.Nodes = append(ps.Nodes, f.node)
			ps.Applied += f.processed.Load()
		}
		s.mu.Unlock()
		slices.Sort(ps.Nodes)
		out = append(out, ps)
	}
	return out
}

func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return u
	}
	p.User = nil
	return p.String()
}
