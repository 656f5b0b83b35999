// Command verify measures what flow verification (enforcer.verify) costs
// a new TLS flow: fqdngate runs as a gateway in namespaces of its own,
// once with verification off and once enforcing, in the same run, and a
// device opens new TLS connections to an allowed name's address through
// it. It reports, per mode, the new verified flows a second (concurrent
// clients, each connection a fresh TCP and TLS handshake) and the time
// from the start of a connection to the server's first byte (the
// ServerHello), p50 and p99, and the ratios enforce / off. Root; every
// packet stays inside its namespaces. bench/verify.sh runs it.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/lab"
)

const (
	gwAddr   = "192.0.2.1"
	devAddr  = "192.0.2.10"
	dnsAddr  = "198.51.100.53"
	siteName = "bench.verify.example"
)

type options struct {
	bin        string
	duration   time.Duration
	clients    int
	sequential int
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/fqdngate", "the fqdngate binary")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "how long each mode's rate run lasts")
	flag.IntVar(&o.clients, "clients", 16, "concurrent clients in the rate run")
	flag.IntVar(&o.sequential, "sequential", 500, "connections, one at a time, for the first-byte latency")
	flag.Parse()
	if !lab.IsRoot() {
		fmt.Fprintln(os.Stderr, "verify: needs root (network namespaces, nftables)")
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "verify:", err)
		os.Exit(1)
	}
}

type result struct {
	mode     string
	rate     float64 // new flows a second, concurrent
	failed   int64
	p50, p99 time.Duration // connection start to the server's first byte
}

func run(o options) error {
	l, err := newLab()
	if err != nil {
		return err
	}
	defer l.close()
	var results []result
	for _, mode := range []string{"off", "enforce"} {
		r, err := l.measure(o, mode)
		if err != nil {
			return fmt.Errorf("verify %s: %w", mode, err)
		}
		results = append(results, r)
	}
	off, on := results[0], results[1]
	fmt.Printf("# fqdngate flow verification: new TLS flows through the gateway, verify off and enforce in one run\n\n")
	fmt.Printf("| verify | new flows/s (%d clients, %s) | failed | first byte p50 | first byte p99 |\n|---|---|---|---|---|\n", o.clients, o.duration)
	for _, r := range results {
		fmt.Printf("| %s | %.0f | %d | %s | %s |\n", r.mode, r.rate, r.failed, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond))
	}
	fmt.Printf("\nenforce / off: %.2f× the flow rate; first byte %+d µs at p50, %+d µs at p99 (%d connections one at a time)\n",
		on.rate/off.rate, (on.p50 - off.p50).Microseconds(), (on.p99 - off.p99).Microseconds(), o.sequential)
	return nil
}

// benchLab is a device, the gateway and a fake internet with the name's
// authoritative DNS and a TLS server on its address.
type benchLab struct {
	gw, dev, inet *lab.NS
	stopDNS       func()
	tlsLn         net.Listener
	ca            *lab.CA
	site          netip.Addr
	dir           string
}

func newLab() (l *benchLab, err error) {
	l = &benchLab{}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	if l.dir, err = os.MkdirTemp("", "fqdngate-bench-verify-"); err != nil {
		return nil, err
	}
	for _, p := range []struct {
		ns   **lab.NS
		role string
	}{{&l.gw, "bvgw"}, {&l.dev, "bvdev"}, {&l.inet, "bvinet"}} {
		if *p.ns, err = lab.NewNS(p.role); err != nil {
			return nil, err
		}
	}
	if err := lab.Veth(l.gw, "dev0", l.dev, "eth0"); err != nil {
		return nil, err
	}
	if err := lab.Veth(l.gw, "up0", l.inet, "eth0"); err != nil {
		return nil, err
	}
	steps := []struct {
		ns   *lab.NS
		args []string
	}{
		{l.gw, []string{"ip", "addr", "add", gwAddr + "/24", "dev", "dev0"}},
		{l.gw, []string{"ip", "addr", "add", "198.51.100.1/24", "dev", "up0"}},
		{l.gw, []string{"ip", "route", "add", "default", "via", "198.51.100.2"}},
		{l.gw, []string{"sysctl", "-qw", "net.ipv4.ip_forward=1"}},
		{l.dev, []string{"ip", "addr", "add", devAddr + "/24", "dev", "eth0"}},
		{l.dev, []string{"ip", "route", "add", "default", "via", gwAddr}},
		{l.inet, []string{"ip", "addr", "add", "198.51.100.2/24", "dev", "eth0"}},
		{l.inet, []string{"ip", "addr", "add", dnsAddr + "/32", "dev", "lo"}},
		{l.inet, []string{"ip", "route", "add", "local", "203.0.113.0/24", "dev", "lo"}},
		{l.inet, []string{"ip", "route", "add", "192.0.2.0/24", "via", "198.51.100.1"}},
	}
	for _, s := range steps {
		if out, err := s.ns.Run(s.args[0], s.args[1:]...); err != nil {
			return nil, fmt.Errorf("%v: %w: %s", s.args, err, out)
		}
	}
	auth := lab.NewAuthDNS([]lab.Site{{Name: siteName, Kind: lab.Stable}}, 20*time.Second)
	if l.stopDNS, err = auth.Serve(l.inet, dnsAddr+":53"); err != nil {
		return nil, err
	}
	if l.ca, err = lab.NewCA("fqdngate bench verify CA"); err != nil {
		return nil, err
	}
	if err := l.inet.Do(func() error {
		l.tlsLn, err = tls.Listen("tcp", "[::]:443", l.ca.ServerConfig())
		return err
	}); err != nil {
		return nil, err
	}
	go serveTLS(l.tlsLn)
	return l, nil
}

// serveTLS completes each handshake (the ServerHello is the first byte the
// client times) and closes.
func serveTLS(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_ = c.(*tls.Conn).Handshake()
		}()
	}
}

func (l *benchLab) close() {
	if l.tlsLn != nil {
		l.tlsLn.Close()
	}
	if l.stopDNS != nil {
		l.stopDNS()
	}
	for _, ns := range []*lab.NS{l.gw, l.dev, l.inet} {
		if ns != nil {
			_ = ns.Delete()
		}
	}
	if l.dir != "" {
		os.RemoveAll(l.dir)
	}
}

func (l *benchLab) config(mode string) string {
	return fmt.Sprintf(`mode: enforce
listen:
  dns: ["%s:53"]
  api: "127.0.0.1:9053"
upstreams: ["%s"]
enforcer:
  min_ttl: 10m
  grace: 1m
  verify: %s
clients:
  - name: devices
    cidrs: ["192.0.2.0/24"]
    max_qps: 0
    max_inflight: 0
    rules:
      - name: site
        fqdn: ["%s"]
        ports: ["tcp/443"]
state_dir: ""
log:
  level: warn
`, gwAddr, dnsAddr, mode, siteName)
}

// measure starts fqdngate with verify mode, resolves the name from the
// device (which opens its address for the device), and times new flows.
func (l *benchLab) measure(o options, mode string) (result, error) {
	r := result{mode: mode}
	cfg := filepath.Join(l.dir, "gw-"+mode+".yaml")
	if err := os.WriteFile(cfg, []byte(l.config(mode)), 0o600); err != nil {
		return r, err
	}
	cmd := l.gw.Command(o.bin, "run", "--config", cfg)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return r, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		_, _ = l.gw.Run("nft", "delete", "table", "inet", "fqdngate")
	}()
	site, err := l.resolve()
	if err != nil {
		return r, err
	}
	l.site = site
	// Latency: one connection at a time, so that nothing queues behind
	// another flow's verdict.
	var lat []time.Duration
	for range o.sequential {
		d, err := l.firstByte()
		if err != nil {
			return r, fmt.Errorf("connection %d: %w", len(lat), err)
		}
		lat = append(lat, d)
	}
	slices.Sort(lat)
	r.p50, r.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	// Rate: concurrent clients for the duration.
	var done, failed atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), o.duration)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for range o.clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := l.firstByte(); err != nil {
					if failed.Add(1) <= 3 {
						fmt.Fprintf(os.Stderr, "verify %s: a flow failed: %v\n", mode, err)
					}
					continue
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	r.rate = float64(done.Load()) / time.Since(start).Seconds()
	r.failed = failed.Load()
	return r, nil
}

// resolve asks the gateway from the device until it answers.
func (l *benchLab) resolve() (netip.Addr, error) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		var addr netip.Addr
		err := l.dev.Do(func() error {
			m := new(dns.Msg)
			m.SetQuestion(siteName+".", dns.TypeA)
			r, _, err := (&dns.Client{Timeout: 500 * time.Millisecond}).Exchange(m, gwAddr+":53")
			if err != nil {
				return err
			}
			for _, rr := range r.Answer {
				if a, ok := rr.(*dns.A); ok {
					addr, _ = netip.AddrFromSlice(a.A)
				}
			}
			if !addr.IsValid() {
				return errors.New("no address in the answer")
			}
			return nil
		})
		if err == nil {
			return addr.Unmap(), nil
		}
		if time.Now().After(deadline) {
			return netip.Addr{}, fmt.Errorf("fqdngate did not answer within 15 s: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// firstByte opens a new TCP connection from the device and sends a
// ClientHello for the allowed name; it returns the time until the
// server's first byte arrived (the handshake then completes).
func (l *benchLab) firstByte() (time.Duration, error) {
	var c net.Conn
	start := time.Now()
	if err := l.dev.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", netip.AddrPortFrom(l.site, 443).String(), 3*time.Second)
		return err
	}); err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	fb := &firstRead{Conn: c}
	tc := tls.Client(fb, &tls.Config{ServerName: siteName, RootCAs: l.ca.Pool()})
	if err := tc.Handshake(); err != nil {
		return 0, err
	}
	return fb.at.Sub(start), nil
}

// firstRead notes when the first byte from the server arrived.
type firstRead struct {
	net.Conn
	at time.Time
}

func (f *firstRead) Read(b []byte) (int, error) {
	n, err := f.Conn.Read(b)
	if n > 0 && f.at.IsZero() {
		f.at = time.Now()
	}
	return n, err
}
