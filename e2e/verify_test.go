package e2e

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/fqdngate/fqdngate/internal/api"
	"github.com/fqdngate/fqdngate/internal/lab"
	"github.com/fqdngate/fqdngate/internal/lab/labtest"
	"github.com/fqdngate/fqdngate/internal/monitor"
)

// Verification lab: cdn.example.com and legacy.example.com are two names
// on two edge addresses that serve every name (a shared CDN address), a
// TLS echo on 5671 and HTTP on 80. legacy has verify: false.
const (
	cdnAddr    = "203.0.113.50"
	legacyAddr = "203.0.113.51"
	cdnAddr6   = "2001:db8:cd::50"
	shortAddr  = "203.0.113.52"
)

func verifyClients(mode string) string {
	return fmt.Sprintf(`  verify: %s
cache_size: 0
clients:
  - name: devices
    cidrs: ["192.0.2.0/24", "2001:db8:1::/64"]
    rules:
      - name: cdn
        fqdn: ["cdn.example.com", "short.cdn.example.com"]
        ports: ["tcp/5671", "tcp/80", "tcp/443"]
      - name: legacy
        fqdn: ["legacy.example.com"]
        ports: ["tcp/5671"]
        verify: false
`, mode)
}

// seenNames are the server names the lab's TLS server got ClientHellos
// for: a flow fqdngate resets must never get there.
var seenNames sync.Map

func newVerifyTopo(t *testing.T, mode string) (*topo, *lab.CA) {
	return newVerifyTopoClients(t, verifyClients(mode))
}

// newVerifyTopoClients is the verification lab with the enforcer's
// verify line and the clients section given.
func newVerifyTopoClients(t *testing.T, clients string) (*topo, *lab.CA) {
	tp := newTopoClients(t, "enforce", clients)
	tp.auth.mu.Lock()
	tp.auth.records = map[string][]string{
		"cdn.example.com.|A":       {"cdn.example.com. 300 IN A " + cdnAddr},
		"cdn.example.com.|AAAA":    {"cdn.example.com. 300 IN AAAA " + cdnAddr6},
		"legacy.example.com.|A":    {"legacy.example.com. 300 IN A " + legacyAddr},
		"cdn.example.com.|HTTPS":   {"cdn.example.com. 300 IN HTTPS 1 . alpn=h2 ech=AEX+DQBBpQAgACB/"},
		"legacy.example.com.|AAAA": {},
		"short.cdn.example.com.|A": {"short.cdn.example.com. 1 IN A " + shortAddr},
	}
	tp.auth.mu.Unlock()
	ca, err := lab.NewCA("fqdngate verify lab")
	if err != nil {
		t.Fatal(err)
	}
	var tlsLn, httpLn net.Listener
	if err := tp.inet.Do(func() error {
		var err error
		cfg := ca.ServerConfig()
		get := cfg.GetCertificate
		cfg.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			seenNames.Store(h.ServerName, true)
			return get(h)
		}
		if tlsLn, err = tls.Listen("tcp", "[::]:5671", cfg); err != nil {
			return err
		}
		httpLn, err = net.Listen("tcp", "[::]:80")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tlsLn.Close(); httpLn.Close() })
	go serveEcho(tlsLn)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host %s\n", r.Host)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(httpLn) }()
	t.Cleanup(func() { srv.Close() })
	return tp, ca
}

// dialTLS connects from ns to addr:port sending serverName, completes
// the handshake and one echo. mss, when not zero, forces segments of at
// most that many bytes, so the ClientHello spans several.
func dialTLS(ns *lab.NS, ca *lab.CA, addr string, port int, serverName string, mss int) (*tls.Conn, error) {
	var raw net.Conn
	err := ns.Do(func() error {
		d := net.Dialer{Timeout: 3 * time.Second}
		if mss > 0 {
			d.Control = func(_, _ string, c syscall.RawConn) error {
				var serr error
				err := c.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, mss)
				})
				return errors.Join(err, serr)
			}
		}
		var err error
		raw, err = d.Dial("tcp", net.JoinHostPort(addr, fmt.Sprint(port)))
		return err
	})
	if err != nil {
		return nil, err
	}
	// No server name: nothing to verify the certificate against.
	c := tls.Client(raw, &tls.Config{ServerName: serverName, RootCAs: ca.Pool(), InsecureSkipVerify: serverName == ""})
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if err := c.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	if err := echo(c, "hello"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// dialTLSFrom is dialTLS from a given local port.
func dialTLSFrom(ns *lab.NS, ca *lab.CA, addr string, port int, serverName string, local int) (*tls.Conn, error) {
	var raw net.Conn
	err := ns.Do(func() error {
		d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{Port: local}}
		var err error
		raw, err = d.Dial("tcp", net.JoinHostPort(addr, fmt.Sprint(port)))
		return err
	})
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, &tls.Config{ServerName: serverName, RootCAs: ca.Pool()})
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if err := c.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	if err := echo(c, "hello"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// abort closes c with a reset (SO_LINGER 0), so that its port is free
// again at once.
func abort(c *tls.Conn) {
	if tc, ok := c.NetConn().(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// reset reports whether err is the client's view of a TCP reset.
func reset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

func (tp *topo) resolveA(t *testing.T, name string, want string) {
	t.Helper()
	got := tp.addrsOf(t, tp.devA, name, dns.TypeA, gwDevAddr4)
	if len(got) != 1 || got[0] != netip.MustParseAddr(want) {
		t.Fatalf("%s: %v, want %s", name, got, want)
	}
}

// flowDrop waits for the drop event of devA's flow that sent sent.
func (tp *topo) flowDrop(t *testing.T, reason monitor.Reason, sent string, would bool) monitor.Explanation {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var evs api.EventsResponse
		tp.apiGet(t, "/api/v1/events?since=0&limit=10000", &evs)
		for _, e := range evs.Events {
			if e.Kind == monitor.KindDrop && e.Drop != nil && e.Drop.Reason == reason && e.Drop.Sent == sent && e.WouldDrop == would {
				return *e.Drop
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event for %q (would %v) in %+v", reason, sent, would, evs.Events)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestVerifyEnforce(t *testing.T) {
	tp, ca := newVerifyTopo(t, "enforce")
	tp.resolveA(t, "cdn.example.com.", cdnAddr)

	t.Run("answered name completes a TLS handshake", func(t *testing.T) {
		c, err := dialTLS(tp.devA, ca, cdnAddr, 5671, "cdn.example.com", 0)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	})
	t.Run("another name on the same address is reset and explained", func(t *testing.T) {
		_, err := dialTLS(tp.devA, ca, cdnAddr, 5671, "www.other.example", 0)
		if !reset(err) {
			t.Fatalf("got %v, want a reset", err)
		}
		ex := tp.flowDrop(t, monitor.SNIMismatch, "www.other.example", false)
		if _, ok := seenNames.Load("www.other.example"); ok {
			t.Error("the server got the ClientHello of a flow fqdngate reset")
		}
		if _, ok := seenNames.Load("cdn.example.com"); !ok {
			t.Error("the server never saw the answered name (the check above proves nothing)")
		}
		if ex.Client != netip.MustParseAddr(devAAddr4) || ex.Addr != netip.MustParseAddr(cdnAddr) || ex.Port != "tcp/5671" ||
			len(ex.Answered) != 1 || ex.Answered[0] != "cdn.example.com" || ex.Time.IsZero() {
			t.Errorf("explanation %+v", ex)
		}
		var got monitor.Explanation
		tp.apiGet(t, "/api/v1/explain?addr="+cdnAddr+"&client="+devAAddr4+"&port=tcp/5671", &got)
		if got.Reason != monitor.SNIMismatch || got.Sent != "www.other.example" {
			t.Errorf("explain: %+v", got)
		}
		if m := tp.metrics(t); m[`fqdngate_drops_total{reason="sni-mismatch"}`] < 1 {
			t.Errorf("metrics: %v", m[`fqdngate_drops_total{reason="sni-mismatch"}`])
		}
	})
	t.Run("server name in later segments", func(t *testing.T) {
		c, err := dialTLS(tp.devA, ca, cdnAddr, 5671, "cdn.example.com", 256)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if _, err := dialTLS(tp.devA, ca, cdnAddr, 5671, "split.other.example", 256); !reset(err) {
			t.Fatalf("got %v, want a reset", err)
		}
		tp.flowDrop(t, monitor.SNIMismatch, "split.other.example", false)
	})
	t.Run("no server name", func(t *testing.T) {
		if _, err := dialTLS(tp.devA, ca, cdnAddr, 5671, "", 0); !reset(err) {
			t.Fatalf("got %v, want a reset", err)
		}
		tp.flowDrop(t, monitor.SNIMissing, "", false)
	})
	t.Run("http host", func(t *testing.T) {
		get := func(host string) (string, error) {
			var body string
			err := tp.devA.Do(func() error {
				c, err := net.DialTimeout("tcp", cdnAddr+":80", 3*time.Second)
				if err != nil {
					return err
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(3 * time.Second))
				if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host); err != nil {
					return err
				}
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				body = string(b)
				return err
			})
			return body, err
		}
		if body, err := get("cdn.example.com"); err != nil || body != "host cdn.example.com\n" {
			t.Fatalf("answered Host: %q, %v", body, err)
		}
		if _, err := get("other.example"); !reset(err) {
			t.Fatalf("other Host: %v, want a reset", err)
		}
		tp.flowDrop(t, monitor.HostMismatch, "other.example", false)
	})
	t.Run("openssl and curl", func(t *testing.T) {
		labtest.Require(t, "openssl", "curl")
		pem := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(pem, ca.PEM(), 0o600); err != nil {
			t.Fatal(err)
		}
		sClient := func(name string) (string, error) {
			cmd := tp.devA.Command("timeout", "5", "openssl", "s_client", "-connect", cdnAddr+":5671",
				"-servername", name, "-CAfile", pem, "-verify_return_error", "-brief")
			cmd.Stdin = strings.NewReader("")
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		if out, err := sClient("cdn.example.com"); err != nil || !strings.Contains(out, "CONNECTION ESTABLISHED") {
			t.Errorf("openssl, answered name: %v\n%s", err, out)
		}
		// errno 104 is ECONNRESET.
		if out, err := sClient("openssl.other.example"); err == nil || !strings.Contains(out, "errno=104") && !strings.Contains(strings.ToLower(out), "reset") {
			t.Errorf("openssl, other name: %v, want a reset\n%s", err, out)
		}
		tp.flowDrop(t, monitor.SNIMismatch, "openssl.other.example", false)
		curl := func(args ...string) (string, int) {
			cmd := tp.devA.Command("curl", append([]string{"-sS", "--max-time", "5"}, args...)...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return string(out), ee.ExitCode()
			}
			return string(out), 0
		}
		if out, code := curl("--resolve", "cdn.example.com:80:"+cdnAddr, "http://cdn.example.com/"); code != 0 || out != "host cdn.example.com\n" {
			t.Errorf("curl, answered Host: exit %d\n%s", code, out)
		}
		// 56: failure receiving network data (the reset).
		if out, code := curl("-H", "Host: curl.other.example", "http://"+cdnAddr+"/"); code != 56 {
			t.Errorf("curl, other Host: exit %d, want 56 (reset)\n%s", code, out)
		}
		tp.flowDrop(t, monitor.HostMismatch, "curl.other.example", false)
	})
	t.Run("not TLS on 443", func(t *testing.T) {
		_, err := connect(tp.devA, netip.MustParseAddr(cdnAddr), 443, 3*time.Second)
		if !reset(err) {
			t.Fatalf("got %v, want a reset", err)
		}
		tp.flowDrop(t, monitor.NotTLS, "", false)
	})
	t.Run("verify false passes any name", func(t *testing.T) {
		tp.resolveA(t, "legacy.example.com.", legacyAddr)
		c, err := dialTLS(tp.devA, ca, legacyAddr, 5671, "anything.other.example", 0)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		m := tp.metrics(t)
		if m[`fqdngate_verify_flows_total{verdict="unverified"}`] != 1 || m[`fqdngate_verify_flows_total{verdict="dropped"}`] < 5 {
			t.Errorf("verify metrics: unverified %v, dropped %v", m[`fqdngate_verify_flows_total{verdict="unverified"}`], m[`fqdngate_verify_flows_total{verdict="dropped"}`])
		}
	})
	t.Run("ipv6", func(t *testing.T) {
		got := tp.addrsOf(t, tp.devA, "cdn.example.com.", dns.TypeAAAA, gwDevAddr6)
		if len(got) != 1 {
			t.Fatalf("AAAA: %v", got)
		}
		c, err := dialTLS(tp.devA, ca, cdnAddr6, 5671, "cdn.example.com", 0)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if _, err := dialTLS(tp.devA, ca, cdnAddr6, 5671, "v6.other.example", 0); !reset(err) {
			t.Fatalf("got %v, want a reset", err)
		}
	})
	t.Run("ipv6 extension headers do not skip the verdict", func(t *testing.T) {
		// A destination options header (one PadN option) before TCP on
		// every packet of the connection: fqdngate cannot read such a
		// packet as TCP, so it drops it rather than let it through
		// unjudged; the server never gets the ClientHello.
		dstopts := []byte{0, 0, 1, 4, 0, 0, 0, 0}
		var raw net.Conn
		err := tp.devA.Do(func() error {
			d := net.Dialer{Timeout: 2 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
				var serr error
				err := c.Control(func(fd uintptr) {
					serr = syscall.SetsockoptString(int(fd), syscall.IPPROTO_IPV6, unix.IPV6_DSTOPTS, string(dstopts))
				})
				return errors.Join(err, serr)
			}}
			var err error
			raw, err = d.Dial("tcp", net.JoinHostPort(cdnAddr6, "5671"))
			return err
		})
		if err == nil {
			c := tls.Client(raw, &tls.Config{ServerName: "ext.other.example", RootCAs: ca.Pool()})
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			err = c.Handshake()
			c.Close()
		}
		if err == nil {
			t.Fatal("a TLS handshake with another name completed with IPv6 extension headers")
		}
		if _, ok := seenNames.Load("ext.other.example"); ok {
			t.Error("the server got the ClientHello of a flow with extension headers")
		}
	})
	t.Run("ech parameter stripped", func(t *testing.T) {
		r, err := tp.resolve(tp.devA, "cdn.example.com.", dns.TypeHTTPS, gwDevAddr4)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Answer) != 1 || strings.Contains(r.Answer[0].String(), "ech=") || !strings.Contains(r.Answer[0].String(), "alpn") {
			t.Fatalf("HTTPS answer %v", r.Answer)
		}
	})
	t.Run("a verified session outlives its answer", func(t *testing.T) {
		tp.resolveA(t, "short.cdn.example.com.", shortAddr)
		c, err := dialTLS(tp.devA, ca, shortAddr, 5671, "short.cdn.example.com", 0)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		deadline := time.Now().Add(10 * time.Second)
		for {
			var ex monitor.Explanation
			tp.apiGet(t, "/api/v1/explain?addr="+shortAddr+"&client="+devAAddr4+"&port=tcp/5671", &ex)
			if ex.Reason == monitor.Expired {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the answer did not expire: %+v", ex)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err := echo(c, "after expiry"); err != nil {
			t.Fatalf("the verified session stopped when its answer expired: %v", err)
		}
	})
	t.Run("a reused port gets a verdict of its own", func(t *testing.T) {
		// A client that resets a verified flow and opens the next one
		// from the same port at once: the second flow, with another
		// name, must be judged on its own name, not pass on the first
		// one's verdict.
		const port = 40555
		first, err := dialTLSFrom(tp.devA, ca, cdnAddr, 5671, "cdn.example.com", port)
		if err != nil {
			t.Fatalf("the allowed name: %v", err)
		}
		abort(first)
		if _, err := dialTLSFrom(tp.devA, ca, cdnAddr, 5671, "www.other.example", port); err == nil || !reset(err) {
			t.Fatalf("another name from the same port right after: %v, want a reset", err)
		}
		again, err := dialTLSFrom(tp.devA, ca, cdnAddr, 5671, "cdn.example.com", port+1)
		if err != nil {
			t.Fatalf("the allowed name again: %v", err)
		}
		again.Close()
	})
	t.Run("daemon killed: verified flows go on, new ones wait", func(t *testing.T) {
		c, err := dialTLS(tp.devA, ca, cdnAddr, 5671, "cdn.example.com", 0)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := tp.proc.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-tp.exited
		for i := range 3 {
			if err := echo(c, fmt.Sprintf("after kill %d", i)); err != nil {
				t.Fatalf("the verified flow stopped: %v", err)
			}
		}
		if _, err := dialTLS(tp.devA, ca, cdnAddr, 5671, "cdn.example.com", 0); err == nil || reset(err) {
			t.Fatalf("a new flow while the daemon is down: %v, want it held (a timeout)", err)
		}
	})
}

func TestVerifyObserve(t *testing.T) {
	tp, ca := newVerifyTopo(t, "observe")
	tp.resolveA(t, "cdn.example.com.", cdnAddr)
	c, err := dialTLS(tp.devA, ca, cdnAddr, 5671, "www.other.example", 0)
	if err != nil {
		t.Fatalf("observe mode dropped a mismatch: %v", err)
	}
	c.Close()
	tp.flowDrop(t, monitor.SNIMismatch, "www.other.example", true)
	if m := tp.metrics(t); m[`fqdngate_would_drops_total{reason="sni-mismatch"}`] != 1 || m[`fqdngate_drops_total{reason="sni-mismatch"}`] != 0 ||
		m[`fqdngate_verify_flows_total{verdict="passed"}`] != 1 || m[`fqdngate_verify_flows_total{verdict="dropped"}`] != 0 {
		t.Errorf("metrics: would %v, drops %v", m[`fqdngate_would_drops_total{reason="sni-mismatch"}`], m[`fqdngate_drops_total{reason="sni-mismatch"}`])
	}
	// Observe never blocks: with the daemon gone, a new flow on a
	// verified port goes on unjudged (the queue bypasses), where enforce
	// holds it (TestVerifyEnforce).
	if err := tp.proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-tp.exited
	c, err = dialTLS(tp.devA, ca, cdnAddr, 5671, "www.other.example", 0)
	if err != nil {
		t.Fatalf("observe mode held a new flow while the daemon was down: %v", err)
	}
	c.Close()
}

// TestVerifyHostMode: verification on the host itself (hook output,
// scope global): the host's own TLS client passes with the name it
// resolved and is reset with another on the same address.
func TestVerifyHostMode(t *testing.T) {
	labtest.Require(t, "ip", "nft", "sysctl")
	host, inet := labtest.NS(t, "host"), labtest.NS(t, "inet")
	if err := lab.Veth(host, "eth0", inet, "eth0"); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{{"host", "ip", "addr", "add", hostAddr + "/24", "dev", "eth0"}, {"host", "ip", "route", "add", "default", "via", "198.51.100.2"},
		{"inet", "ip", "addr", "add", "198.51.100.2/24", "dev", "eth0"}, {"inet", "ip", "addr", "add", upstreamAddr + "/32", "dev", "lo"},
		{"inet", "ip", "route", "add", "local", "203.0.113.0/24", "dev", "lo"}} {
		ns := host
		if c[0] == "inet" {
			ns = inet
		}
		if out, err := ns.Run(c[1], c[2:]...); err != nil {
			t.Fatalf("%v: %v\n%s", c, err, out)
		}
	}
	auth := startAuth(t, inet)
	ca, err := lab.NewCA("fqdngate verify host lab")
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := inet.Do(func() error {
		var err error
		ln, err = tls.Listen("tcp", "[::]:5671", ca.ServerConfig())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, err := bufio.NewReader(c).ReadString('\n')
				if err == nil {
					_, _ = c.Write([]byte(line))
				}
			}()
		}
	}()
	tp := &topo{t: t, gw: host, devA: host, inet: inet, auth: auth, probeDNS: "127.0.0.1",
		cfgPath: filepath.Join(t.TempDir(), "host.yaml")}
	cfg := fmt.Sprintf(`mode: enforce
listen:
  dns: ["127.0.0.1:53"]
upstreams: ["%s"]
enforcer:
  hook: output
  min_ttl: 0s
  grace: 1s
  verify: enforce
cache_size: 0
clients:
  - name: host
    cidrs: ["127.0.0.0/8", "%s/32"]
    rules:
      - name: web
        fqdn: ["www.example.com"]
        ports: ["tcp/5671"]
state_dir: ""
`, upstreamAddr, hostAddr)
	if err := os.WriteFile(tp.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	tp.launch()
	if addrs := tp.addrsOf(t, host, "www.example.com.", dns.TypeA, "127.0.0.1"); len(addrs) != 1 || addrs[0] != netip.MustParseAddr("203.0.113.5") {
		t.Fatalf("www.example.com = %v", addrs)
	}
	c, err := dialTLS(host, ca, "203.0.113.5", 5671, "www.example.com", 0)
	if err != nil {
		t.Fatalf("answered name: %v", err)
	}
	c.Close()
	if _, err := dialTLS(host, ca, "203.0.113.5", 5671, "host.other.example", 0); !reset(err) {
		t.Fatalf("another name: %v, want a reset", err)
	}
	tp.flowDrop(t, monitor.SNIMismatch, "host.other.example", false)
}

// verifyReloadBefore has the cdn rule on 5671 and on 9443, a port that
// is not verified by default, where the lab runs a plain echo.
const verifyReloadBefore = `  verify: enforce
cache_size: 0
clients:
  - name: devices
    cidrs: ["192.0.2.0/24", "2001:db8:1::/64"]
    rules:
      - name: cdn
        fqdn: ["cdn.example.com"]
        ports: ["tcp/5671", "tcp/9443"]
`

// TestVerifyReload: a rule's tls_ports and verify: false take effect at a
// reload (SIGHUP), without a restart: a port that tls_ports adds is
// verified from then on, and verify: false lets any name through.
func TestVerifyReload(t *testing.T) {
	tp, ca := newVerifyTopoClients(t, verifyReloadBefore)
	startEcho(t, tp.inet, 9443)
	tp.resolveA(t, "cdn.example.com.", cdnAddr)
	cdn := netip.MustParseAddr(cdnAddr)
	plain := func() error {
		c, err := connect(tp.devA, cdn, 9443, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		return echo(c, "not a ClientHello")
	}
	if err := plain(); err != nil {
		t.Fatalf("plain bytes on 9443 before tls_ports: %v", err)
	}
	if _, err := dialTLS(tp.devA, ca, cdnAddr, 5671, "www.other.example", 0); !reset(err) {
		t.Fatalf("another name on 5671 before verify: false: %v, want a reset", err)
	}
	reload := func(t *testing.T, rule string) {
		t.Helper()
		b, err := os.ReadFile(tp.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		old := `        ports: ["tcp/5671", "tcp/9443"]` + "\n"
		i := strings.Index(string(b), old)
		if i < 0 {
			t.Fatalf("no cdn rule in %s", b)
		}
		j := i + len(old)
		if k := strings.Index(string(b[j:]), "state_dir:"); k >= 0 {
			j += k
		}
		if err := os.WriteFile(tp.cfgPath, []byte(string(b[:i])+old+rule+string(b[j:])), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := tp.proc.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	until := func(t *testing.T, what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 5 s of the reload", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Run("tls_ports added by a reload are verified", func(t *testing.T) {
		reload(t, "        tls_ports: [9443]\n")
		until(t, "plain bytes on 9443 reset", func() bool { return reset(plain()) })
		tp.flowDrop(t, monitor.NotTLS, "", false)
		// Two bytes, the start of a TLS record and the newline the echo
		// answers at, are held like any first bytes (only segments
		// without a byte stay in the kernel): the echo never sees them,
		// and the flow is reset when no ClientHello comes within MaxWait.
		var c net.Conn
		if err := tp.devA.Do(func() error {
			var err error
			c, err = net.DialTimeout("tcp", net.JoinHostPort(cdnAddr, "9443"), 2*time.Second)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte{0x16, '\n'}); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(make([]byte, 8)); n > 0 || !reset(err) {
			t.Errorf("two bytes on a verified port: %d bytes echoed, %v; want none and a reset", n, err)
		}
		if c, err := dialTLS(tp.devA, ca, cdnAddr, 5671, "cdn.example.com", 0); err != nil {
			t.Errorf("the answered name after the reload: %v", err)
		} else {
			c.Close()
		}
	})
	t.Run("verify false set by a reload passes any name", func(t *testing.T) {
		reload(t, "        verify: false\n")
		until(t, "another name on 5671 passes", func() bool {
			c, err := dialTLS(tp.devA, ca, cdnAddr, 5671, "www.other.example", 0)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
		if err := plain(); err != nil {
			t.Errorf("plain bytes on 9443 with verify: false: %v", err)
		}
	})
}
