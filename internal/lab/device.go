package lab

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Endpoint is one host and port a device talks to.
type Endpoint struct {
	Host  string
	Proto string // tcp or udp
	Port  uint16
}

func (e Endpoint) String() string { return fmt.Sprintf("%s %s/%d", e.Host, e.Proto, e.Port) }

// DeviceOptions describe a simulated Azure Sphere device.
type DeviceOptions struct {
	// DNS is the resolver the device is configured with.
	DNS netip.AddrPort
	// Endpoints are tried once per round: HTTP on 80, HTTPS on 443 (SNI,
	// certificate checked against Roots), a TLS session ping on 8883,
	// NTP on udp/123.
	Endpoints []Endpoint
	// Session is held open for the whole run (the IoT hub's tcp/8883),
	// with a ping every SessionEvery; a broken session is re-resolved and
	// reopened, and counted.
	Session      Endpoint
	SessionEvery time.Duration
	// Round is the time between rounds; Timeout bounds one attempt, so a
	// dropped packet shows as a timeout.
	Round, Timeout time.Duration
	Roots          *x509.CertPool
	// Probes are names asked once at the start that the device has no
	// business reaching (an exfiltration name, a host outside the policy):
	// the rcode each got is reported.
	Probes []string
}

// Stat is what a device saw for one endpoint.
type Stat struct {
	Endpoint
	Attempts int
	OK       int
	// Blocked attempts got no answer from the address: a drop.
	Blocked int
	// Denied attempts got no address: the resolver said no.
	Denied int
	// Failed attempts failed otherwise (TLS, protocol, DNS timeout).
	Failed       int
	BlockedAddrs map[netip.Addr]int
	LastErr      string
}

// SessionStat is what a device saw of its long-lived session.
type SessionStat struct {
	Endpoint
	Opened   int
	Messages int
	Failures int
	LastErr  string
}

// Survived reports whether the first session carried every message.
func (s SessionStat) Survived() bool { return s.Opened == 1 && s.Failures == 0 && s.Messages > 0 }

// DeviceReport is a device's run.
type DeviceReport struct {
	Stats   []*Stat
	Session SessionStat
	// Probes maps each probe name to the rcode (or error) it got.
	Probes map[string]string
	Rounds int
}

// Device is a simulated device in its own namespace. It resolves through
// its configured DNS server only, caches answers for their TTL, and then
// connects to the first address of the cached answer, as an embedded
// device's resolver library does.
type Device struct {
	ns  *NS
	opt DeviceOptions

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	addrs   []netip.Addr
	rcode   int
	expires time.Time
}

// NewDevice makes a device in ns.
func NewDevice(ns *NS, opt DeviceOptions) *Device {
	return &Device{ns: ns, opt: opt, cache: make(map[string]cached)}
}

// Run works until ctx ends and reports what the device saw.
func (d *Device) Run(ctx context.Context) *DeviceReport {
	rep := &DeviceReport{Probes: make(map[string]string)}
	for _, p := range d.opt.Probes {
		rep.Probes[p] = d.probe(p)
	}
	stats := make([]*Stat, len(d.opt.Endpoints))
	for i, e := range d.opt.Endpoints {
		stats[i] = &Stat{Endpoint: e, BlockedAddrs: make(map[netip.Addr]int)}
	}
	rep.Stats = stats
	var wg sync.WaitGroup
	if d.opt.Session.Host != "" {
		wg.Add(1)
		go func() { defer wg.Done(); rep.Session = d.holdSession(ctx) }()
	}
	tick := time.NewTicker(d.opt.Round)
	defer tick.Stop()
	for {
		// One attempt per endpoint per round, all at once: the bound is
		// the number of endpoints.
		var round sync.WaitGroup
		for _, st := range stats {
			round.Add(1)
			go func() { defer round.Done(); d.attempt(ctx, st) }()
		}
		round.Wait()
		rep.Rounds++
		select {
		case <-ctx.Done():
			wg.Wait()
			return rep
		case <-tick.C:
		}
	}
}

// probe asks for name once, uncached, and returns the rcode's name.
func (d *Device) probe(name string) string {
	r, err := d.exchange(name, dns.TypeA)
	if err != nil {
		return "error: " + err.Error()
	}
	return dns.RcodeToString[r.Rcode]
}

func (d *Device) attempt(ctx context.Context, st *Stat) {
	addrs, rcode, err := d.lookup(st.Host)
	if ctx.Err() != nil {
		return
	}
	st.Attempts++
	switch {
	case err != nil:
		st.Failed++
		st.LastErr = err.Error()
		return
	case rcode != dns.RcodeSuccess || len(addrs) == 0:
		st.Denied++
		st.LastErr = "dns " + dns.RcodeToString[rcode]
		return
	}
	addr := addrs[0]
	err = d.use(st.Endpoint, addr)
	switch {
	case err == nil:
		st.OK++
	case errors.Is(err, errBlocked) || isTimeout(err):
		st.Blocked++
		st.BlockedAddrs[addr]++
		st.LastErr = fmt.Sprintf("%s at %s: %v", addr, time.Now().Format("15:04:05.000"), err)
	default:
		st.Failed++
		st.LastErr = fmt.Sprintf("%s: %v", addr, err)
	}
}

// lookup answers from the cache while the answer's TTL lasts.
func (d *Device) lookup(name string) ([]netip.Addr, int, error) {
	d.mu.Lock()
	c, ok := d.cache[name]
	d.mu.Unlock()
	if ok && time.Now().Before(c.expires) {
		return c.addrs, c.rcode, nil
	}
	r, err := d.exchange(name, dns.TypeA)
	if err != nil {
		return nil, 0, err
	}
	c = cached{rcode: r.Rcode, expires: time.Now().Add(5 * time.Second)}
	minTTL := uint32(1 << 31)
	for _, rr := range r.Answer {
		minTTL = min(minTTL, rr.Header().Ttl)
		if a, ok := rr.(*dns.A); ok {
			if ad, ok := netip.AddrFromSlice(a.A.To4()); ok {
				c.addrs = append(c.addrs, ad)
			}
		}
	}
	if len(c.addrs) > 0 {
		c.expires = time.Now().Add(time.Duration(minTTL) * time.Second)
	}
	d.mu.Lock()
	d.cache[name] = c
	d.mu.Unlock()
	return c.addrs, c.rcode, nil
}

func (d *Device) exchange(name string, qtype uint16) (*dns.Msg, error) {
	var r *dns.Msg
	err := d.ns.Do(func() error {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qtype)
		m.RecursionDesired = true
		c := &dns.Client{Timeout: d.opt.Timeout}
		var err error
		r, _, err = c.Exchange(m, d.opt.DNS.String())
		return err
	})
	return r, err
}

// dial opens a socket inside the device's namespace.
func (d *Device) dial(network string, addr netip.Addr, port uint16) (net.Conn, error) {
	var c net.Conn
	err := d.ns.Do(func() error {
		var err error
		c, err = net.DialTimeout(network, netip.AddrPortFrom(addr, port).String(), d.opt.Timeout)
		return err
	})
	return c, err
}

// use talks the endpoint's protocol to addr once.
func (d *Device) use(e Endpoint, addr netip.Addr) error {
	if e.Proto == "udp" {
		return d.ntp(addr, e.Port)
	}
	c, err := d.dial("tcp", addr, e.Port)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(d.opt.Timeout))
	switch e.Port {
	case PortHTTP:
		return httpGet(c, e.Host)
	case PortMQTT:
		tc, err := d.handshake(c, e.Host)
		if err != nil {
			return err
		}
		return ping(tc, 0)
	default:
		tc, err := d.handshake(c, e.Host)
		if err != nil {
			return err
		}
		return httpGet(tc, e.Host)
	}
}

func (d *Device) handshake(c net.Conn, host string) (*tls.Conn, error) {
	tc := tls.Client(c, &tls.Config{ServerName: host, RootCAs: d.opt.Roots, MinVersion: tls.VersionTLS12})
	if err := tc.Handshake(); err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return tc, nil
}

func httpGet(c net.Conn, host string) error {
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), host) {
		return fmt.Errorf("http: %s %q", resp.Status, body)
	}
	return nil
}

func ping(c net.Conn, n int) error {
	if _, err := fmt.Fprintf(c, "PING %d\n", n); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if want := fmt.Sprintf("PONG %d", n); strings.TrimSpace(line) != want {
		return fmt.Errorf("session: got %q, want %q", line, want)
	}
	return nil
}

func (d *Device) ntp(addr netip.Addr, port uint16) error {
	c, err := d.dial("udp", addr, port)
	if err != nil {
		return err
	}
	defer c.Close()
	req := make([]byte, 48)
	req[0] = 0x23 // version 4, mode 3 (client)
	if _, err := c.Write(req); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(d.opt.Timeout))
	resp := make([]byte, 64)
	n, err := c.Read(resp)
	if err != nil {
		if isTimeout(err) {
			return errBlocked
		}
		return err
	}
	if n < 48 || resp[0]&0x7 != 4 {
		return fmt.Errorf("ntp: bad reply")
	}
	return nil
}

// holdSession keeps one TLS session to the hub open, pinging it; a broken
// session is counted and reopened after a fresh lookup.
func (d *Device) holdSession(ctx context.Context) SessionStat {
	st := SessionStat{Endpoint: d.opt.Session}
	var conn *tls.Conn
	var r *bufio.Reader
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	tick := time.NewTicker(d.opt.SessionEvery)
	defer tick.Stop()
	for n := 1; ; n++ {
		if conn == nil {
			c, err := d.openSession()
			if err != nil {
				st.Failures++
				st.LastErr = err.Error()
			} else {
				conn, r = c, bufio.NewReader(c)
				st.Opened++
			}
		}
		if conn != nil {
			_ = conn.SetDeadline(time.Now().Add(d.opt.Timeout))
			_, err := fmt.Fprintf(conn, "PING %d\n", n)
			var line string
			if err == nil {
				line, err = r.ReadString('\n')
			}
			if err == nil && strings.TrimSpace(line) != fmt.Sprintf("PONG %d", n) {
				err = fmt.Errorf("got %q", line)
			}
			if err != nil {
				st.Failures++
				st.LastErr = err.Error()
				conn.Close()
				conn = nil
			} else {
				st.Messages++
			}
		}
		select {
		case <-ctx.Done():
			return st
		case <-tick.C:
		}
	}
}

func (d *Device) openSession() (*tls.Conn, error) {
	e := d.opt.Session
	addrs, rcode, err := d.lookup(e.Host)
	if err != nil {
		return nil, err
	}
	if rcode != dns.RcodeSuccess || len(addrs) == 0 {
		return nil, fmt.Errorf("dns %s", dns.RcodeToString[rcode])
	}
	c, err := d.dial("tcp", addrs[0], e.Port)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(d.opt.Timeout))
	tc, err := d.handshake(c, e.Host)
	if err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}
