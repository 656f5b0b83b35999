package monitor

import (
	"container/list"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/policy"
	"golang.org/x/sys/unix"
)

// Reason is why a packet to an address was dropped (or would be).
type Reason string

// The reasons of DESIGN section 9, plus allowed (an explanation of an
// address that is open), dot (DNS over TLS to another resolver) and dns
// (plain DNS to another resolver that the redirect did not catch).
const (
	Allowed       Reason = "allowed"
	NeverResolved Reason = "never-resolved"
	Expired       Reason = "expired"
	OtherClient   Reason = "other-client"
	WrongPort     Reason = "port"
	DeniedName    Reason = "denied-name"
	DoT           Reason = "dot"
	DNSBypass     Reason = "dns"
	// The reasons of section 11: the address was open, the name in the
	// flow was not one answered for it (verify.go).
	SNIMismatch  Reason = "sni-mismatch"
	HostMismatch Reason = "host-mismatch"
	SNIMissing   Reason = "sni-missing"
	NotTLS       Reason = "not-tls"
)

// Reasons lists the drop reasons, for metrics.
var Reasons = []Reason{NeverResolved, Expired, OtherClient, WrongPort, DeniedName, DoT, DNSBypass, SNIMismatch, HostMismatch, SNIMissing, NotTLS}

// Explanation says why an address is open or closed for a client, with the
// names and CNAME chain that led to it. Its JSON is the API's.
type Explanation struct {
	Reason Reason     `json:"reason"`
	Client netip.Addr `json:"client"`
	Addr   netip.Addr `json:"addr"`
	// Port is the packet's port ("tcp/8443"); empty when not asked.
	Port string `json:"port,omitempty"`
	// Name and Chain: the name the address was learnt for and its CNAME
	// targets, in order.
	Name  string   `json:"name,omitempty"`
	Chain []string `json:"chain,omitempty"`
	Rules []string `json:"rules,omitempty"`
	// Node is the cluster node whose answer the entry is; "" outside a
	// cluster.
	Node string `json:"node,omitempty"`
	// Ports the name is allowed on.
	Ports []string `json:"ports,omitempty"`
	// LearntBy is the client the entry belongs to (other-client,
	// denied-name).
	LearntBy netip.Addr `json:"learnt_by,omitzero"`
	TTL      float64    `json:"ttl_seconds,omitempty"`
	Expires  time.Time  `json:"expires,omitzero"`
	// ExpiredAgo is how long before the explanation the entry expired.
	ExpiredAgo float64 `json:"expired_seconds_ago,omitempty"`
	// Sent and Answered (section 11 reasons): the name the flow carried
	// and the names answered to the client for the address.
	Sent     string    `json:"sent,omitempty"`
	Answered []string  `json:"answered,omitempty"`
	Time     time.Time `json:"time,omitzero"`
	Message  string    `json:"message"`
}

// explainScan bounds the ledger entries one explanation reads.
const explainScan = 64

// Explainer attributes packets from the ledger and the denials log.
type Explainer struct {
	Ledger  *ledger.Ledger
	Denials *Denials
	// Global is scope global: an entry opens its address for every client.
	Global bool
	// Grace is added to TTLs, for the hint in expired explanations.
	MinTTL, Grace time.Duration
}

// Explain tells why addr is open or closed for client on proto/port at now.
// An invalid client means "whoever last got it"; proto 0 means any port.
func (x *Explainer) Explain(now time.Time, client, addr netip.Addr, proto uint8, port uint16) Explanation {
	addr = addr.Unmap()
	// Every dropped packet is explained, and a CDN address can be in the
	// entries of thousands of clients: the newest explainScan of them,
	// and of the client's own, are enough to tell why.
	entries, _ := x.Ledger.Select(ledger.Filter{Addr: addr}, explainScan)
	if !client.IsValid() && len(entries) > 0 {
		client = entries[0].Client
	}
	ex := Explanation{Client: client, Addr: addr}
	if proto != 0 {
		ex.Port = policy.PortRange{Proto: proto, Lo: port, Hi: port}.String()
	}
	var mine, others []ledger.Entry
	if x.Global {
		mine = entries
	} else {
		mine, _ = x.Ledger.Select(ledger.Filter{Client: client, Addr: addr}, explainScan)
		for _, e := range entries {
			if e.Client != client {
				others = append(others, e)
			}
		}
	}
	if len(mine) > 0 {
		for _, e := range mine {
			if proto != 0 && !covers(e.Ports, proto, port) {
				continue
			}
			ex.fill(e)
			if e.Live(now) {
				ex.Reason = Allowed
				ex.Message = fmt.Sprintf("%s is %s for %s on %s until %s (%s left)", addr, ex.path(), who(client, x.Global),
					strings.Join(ex.Ports, " "), e.Expires.UTC().Format(time.RFC3339), round(e.Expires.Sub(now)))
				return ex
			}
			ex.Reason = Expired
			ago := now.Sub(e.Expires)
			ex.ExpiredAgo = ago.Seconds()
			ex.Message = fmt.Sprintf("%s was %s for %s, %s, expired %s ago (ttl %s + grace %s): the client used it after its lifetime; raise min_ttl or grace",
				addr, ex.path(), who(client, x.Global), portOr(ex.Port, ex.Ports), round(ago), round(e.TTL), x.Grace)
			return ex
		}
		ex.fill(mine[0])
		ex.Reason = WrongPort
		ex.Message = fmt.Sprintf("%s is %s for %s, allowed on %s, not on %s: add the port to rule %s",
			addr, ex.path(), who(client, x.Global), strings.Join(ex.Ports, " "), ex.Port, strings.Join(ex.Rules, ", "))
		return ex
	}
	for _, e := range others {
		if at, ok := x.Denials.Asked(client, e.Name); ok {
			ex.fill(e)
			ex.LearntBy = e.Client
			ex.Reason = DeniedName
			ex.Message = fmt.Sprintf("%s asked for %s at %s, which is denied for it; %s is %s (learnt for %s)",
				client, e.Name, at.UTC().Format(time.RFC3339), addr, ex.path(), e.Client)
			return ex
		}
	}
	if len(others) > 0 {
		e := others[0]
		ex.fill(e)
		ex.LearntBy = e.Client
		ex.Reason = OtherClient
		ex.Message = fmt.Sprintf("%s is %s for %s, not for %s: with scope client each client must resolve the name itself",
			addr, ex.path(), e.Client, client)
		return ex
	}
	ex.Reason = NeverResolved
	ex.Message = fmt.Sprintf("%s never got %s from fqdngate: a hard-coded address, another resolver or DNS over HTTPS", clientOr(client), addr)
	return ex
}

// ExplainDoT is the explanation of a DNS-over-TLS packet to another
// resolver, which fqdngate drops whatever the ledger says.
func ExplainDoT(client, addr netip.Addr) Explanation {
	return Explanation{Reason: DoT, Client: client, Addr: addr, Port: "tcp/853",
		Message: fmt.Sprintf("%s tried DNS over TLS to %s: clients must resolve through fqdngate", client, addr)}
}

// explainDNSBypass turns the explanation of a dropped packet to port 53
// that fqdngate never opened into what it is: DNS to another resolver.
// The redirect sends such queries to fqdngate, so one that reaches the
// drop rule had no listen address of its family to go to (none
// configured, or only loopback on hook forward), or the redirect chain is
// missing. Saying "never resolved" would send the operator looking for a
// hard-coded address.
func explainDNSBypass(ex Explanation, proto uint8, port uint16) Explanation {
	if port != 53 || (proto != unix.IPPROTO_UDP && proto != unix.IPPROTO_TCP) || ex.Reason != NeverResolved {
		return ex
	}
	fam := "IPv4"
	if ex.Addr.Is6() {
		fam = "IPv6"
	}
	ex.Reason = DNSBypass
	ex.Message = fmt.Sprintf("%s sent DNS to %s, which was not redirected to fqdngate: it has no %s listen address the client can reach (listen.dns; loopback does not count on hook forward); add one, or point the client at fqdngate",
		clientOr(ex.Client), ex.Addr, fam)
	return ex
}

func (ex *Explanation) fill(e ledger.Entry) {
	ex.Name, ex.Chain, ex.Rules, ex.Node = e.Name, e.Chain, e.Rules, e.Node
	ex.Ports = make([]string, len(e.Ports))
	for i, p := range e.Ports {
		ex.Ports[i] = p.String()
	}
	ex.TTL = e.TTL.Seconds()
	ex.Expires = e.Expires.UTC()
}

// path is "name → cname → cname".
func (ex *Explanation) path() string {
	return strings.Join(append([]string{ex.Name}, ex.Chain...), " → ")
}

func covers(ports []policy.PortRange, proto uint8, port uint16) bool {
	for _, p := range ports {
		if p.Contains(proto, port) {
			return true
		}
	}
	return false
}

func who(client netip.Addr, global bool) string {
	if global {
		return "every client"
	}
	return client.String()
}

func clientOr(c netip.Addr) string {
	if c.IsValid() {
		return c.String()
	}
	return "no client"
}

func portOr(port string, ports []string) string {
	if port != "" {
		return port
	}
	return strings.Join(ports, " ")
}

func round(d time.Duration) time.Duration {
	if d > 10*time.Second {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}

// Denials remembers, per client, the names fqdngate refused it, so that a
// drop to an address another client learnt for such a name can be told
// as denied-name. Bounded: PerClient names per client, MaxClients clients,
// the least recently denied client forgotten first.
type Denials struct {
	PerClient, MaxClients int

	mu      sync.Mutex
	clients map[netip.Addr]*list.Element
	lru     list.List // of *clientDenials, most recent at the front
}

type clientDenials struct {
	client netip.Addr
	names  map[string]time.Time
	order  []string // ring of the names, oldest first
}

// NewDenials makes a log with the given bounds.
func NewDenials(perClient, maxClients int) *Denials {
	return &Denials{PerClient: perClient, MaxClients: maxClients, clients: make(map[netip.Addr]*list.Element)}
}

// Add records that client was refused name at t.
func (d *Denials) Add(client netip.Addr, name string, t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	el, ok := d.clients[client]
	if !ok {
		if d.lru.Len() >= d.MaxClients {
			old := d.lru.Back()
			delete(d.clients, old.Value.(*clientDenials).client)
			d.lru.Remove(old)
		}
		el = d.lru.PushFront(&clientDenials{client: client, names: make(map[string]time.Time)})
		d.clients[client] = el
	}
	d.lru.MoveToFront(el)
	cd := el.Value.(*clientDenials)
	if _, seen := cd.names[name]; !seen {
		if len(cd.order) >= d.PerClient {
			delete(cd.names, cd.order[0])
			cd.order = cd.order[1:]
		}
		cd.order = append(cd.order, name)
	}
	cd.names[name] = t
}

// Asked reports whether client was refused name, and when last.
func (d *Denials) Asked(client netip.Addr, name string) (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	el, ok := d.clients[client]
	if !ok {
		return time.Time{}, false
	}
	t, ok := el.Value.(*clientDenials).names[name]
	return t, ok
}
