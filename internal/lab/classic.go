package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// ClassicTable is the nftables table of the baseline firewall.
const ClassicTable = "classicfw"

// Classic is the firewall of the support request: an FQDN allow-list that
// the firewall resolves itself, from its own vantage point, every Refresh,
// allowing only the addresses it got (as nftables set elements, the way
// FQDN objects of commercial firewalls work). Devices use another
// resolver, so behind a geo-DNS CDN the two disagree.
type Classic struct {
	ns       *NS
	allowed  []Endpoint
	upstream netip.AddrPort
	source   netip.Addr
	refresh  time.Duration

	mu sync.Mutex
	// resolved holds every address the firewall ever allowed, with its
	// name: a blocked address not in it is one the firewall never saw.
	resolved map[netip.Addr]string
	done     chan struct{}
}

// StartClassic installs the firewall in ns and keeps its set current until
// ctx ends. Its own queries go from source to upstream.
func StartClassic(ctx context.Context, ns *NS, allowed []Endpoint, upstream netip.AddrPort, source netip.Addr, refresh time.Duration) (*Classic, error) {
	c := &Classic{ns: ns, allowed: allowed, upstream: upstream, source: source, refresh: refresh,
		resolved: make(map[netip.Addr]string), done: make(chan struct{})}
	table := fmt.Sprintf(`table inet %[1]s {
	set allowed { type ipv4_addr . inet_proto . inet_service; }
	counter blocked { }
	chain forward {
		type filter hook forward priority 0; policy drop;
		ct state established,related accept
		ip daddr . meta l4proto . th dport @allowed accept
		counter name blocked drop
	}
}
`, ClassicTable)
	if err := c.nft(table); err != nil {
		return nil, err
	}
	if err := c.update(); err != nil {
		return nil, err
	}
	go c.loop(ctx)
	return c, nil
}

func (c *Classic) loop(ctx context.Context) {
	defer close(c.done)
	t := time.NewTicker(c.refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// A failed refresh keeps the previous set, as a firewall
			// whose resolver is unreachable would.
			_ = c.update()
		}
	}
}

// Wait returns when the refresh loop has stopped.
func (c *Classic) Wait() { <-c.done }

// update resolves every allowed name and replaces the set in one
// transaction.
func (c *Classic) update() error {
	var elems []string
	got := make(map[netip.Addr]string)
	for _, e := range c.allowed {
		addrs, err := c.resolve(e.Host)
		if err != nil {
			continue // a real firewall keeps going; the name is simply not allowed
		}
		for _, a := range addrs {
			got[a] = e.Host
			elems = append(elems, fmt.Sprintf("%s . %s . %d", a, e.Proto, e.Port))
		}
	}
	script := fmt.Sprintf("flush set inet %s allowed\n", ClassicTable)
	if len(elems) > 0 {
		script += fmt.Sprintf("add element inet %s allowed { %s }\n", ClassicTable, strings.Join(elems, ", "))
	}
	if err := c.nft(script); err != nil {
		return err
	}
	c.mu.Lock()
	for a, n := range got {
		c.resolved[a] = n
	}
	c.mu.Unlock()
	return nil
}

// resolve asks the upstream from the firewall's own address, following
// the CNAME chain in the answer.
func (c *Classic) resolve(name string) ([]netip.Addr, error) {
	var r *dns.Msg
	err := c.ns.Do(func() error {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		cl := &dns.Client{Timeout: 2 * time.Second,
			Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: c.source.AsSlice()}}}
		var err error
		r, _, err = cl.Exchange(m, c.upstream.String())
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			if ad, ok := netip.AddrFromSlice(a.A.To4()); ok {
				out = append(out, ad)
			}
		}
	}
	return out, nil
}

func (c *Classic) nft(script string) error {
	cmd := c.ns.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("classic firewall: nft: %v: %s", err, out)
	}
	return nil
}

// ResolvedAddrs lists every address the firewall ever allowed.
func (c *Classic) ResolvedAddrs() []netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]netip.Addr, 0, len(c.resolved))
	for a := range c.resolved {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

var packetsRe = regexp.MustCompile(`packets (\d+)`)

// BlockedPackets reads the firewall's drop counter.
func (c *Classic) BlockedPackets() (int, error) {
	return CounterPackets(c.ns, ClassicTable, "blocked")
}

// CounterPackets reads a named nftables counter of table inet table in
// ns, the way an operator would.
func CounterPackets(ns *NS, table, name string) (int, error) {
	out, err := ns.Run("nft", "list", "counter", "inet", table, name)
	if err != nil {
		return 0, err
	}
	m := packetsRe.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("counter %s of table inet %s: no packet count in %q", name, table, out)
	}
	return strconv.Atoi(m[1])
}

// Forwarder is the corporate DNS server the devices behind the classic
// firewall use: it forwards every query, unfiltered, from its own address.
type Forwarder struct {
	upstream netip.AddrPort
	source   netip.Addr
	stop     func()
	ns       *NS
}

// StartForwarder serves DNS on listen inside ns.
func StartForwarder(ns *NS, listen string, upstream netip.AddrPort, source netip.Addr) (*Forwarder, error) {
	f := &Forwarder{upstream: upstream, source: source, ns: ns}
	stop, err := serveDNS(ns, listen, f)
	if err != nil {
		return nil, err
	}
	f.stop = stop
	return f, nil
}

// Stop stops serving.
func (f *Forwarder) Stop() { f.stop() }

// ServeDNS forwards the query; the socket is made inside the namespace.
func (f *Forwarder) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	var resp *dns.Msg
	err := f.ns.Do(func() error {
		cl := &dns.Client{Timeout: 2 * time.Second,
			Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: f.source.AsSlice()}}}
		var err error
		resp, _, err = cl.Exchange(r, f.upstream.String())
		return err
	})
	if err != nil {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		_ = w.WriteMsg(m)
		return
	}
	_ = w.WriteMsg(resp)
}
