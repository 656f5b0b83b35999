package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/config"
	"github.com/fqdngate/fqdngate/internal/lab"
	"github.com/fqdngate/fqdngate/internal/lab/labtest"
)

// TestTCPDNS: fqdngate's TCP listener as devices and strangers meet it,
// with the default bounds (listen.tcp_*): a source in no client group is
// closed at accept; queries pipelined on one connection are all
// answered; a slowloris flood from one device stops neither UDP nor TCP
// service for the others nor UDP for itself, and is counted.
func TestTCPDNS(t *testing.T) {
	tp := newTopo(t, "enforce")
	gwDNS := gwDevAddr4 + ":53"

	t.Run("non-client refused at accept", func(t *testing.T) {
		// The fake internet routes to the device network through the
		// gateway: 198.51.100.2 is in no client group.
		before := tp.metrics(t)[`fqdngate_dns_tcp_refused_total{reason="not_client"}`]
		var c net.Conn
		if err := tp.inet.Do(func() error {
			var err error
			c, err = net.DialTimeout("tcp", gwDNS, 2*time.Second)
			return err
		}); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatal(err)
		}
		if c != nil {
			defer c.Close()
			_, _ = c.Write(tcpFrame(t, tcpTestQuery("www.example.com.", dns.TypeA, 1)))
			if err := closedWithoutAnswer(c); err != nil {
				t.Errorf("a non-client's connection: %v, want it closed without an answer", err)
			}
		}
		if got := tp.metrics(t)[`fqdngate_dns_tcp_refused_total{reason="not_client"}`]; got != before+1 {
			t.Errorf("refused not_client %v, want %v", got, before+1)
		}
	})

	t.Run("pipelining", func(t *testing.T) {
		qs := []struct {
			name   string
			qtype  uint16
			rcode  int
			answer bool
		}{
			{"www.example.com.", dns.TypeA, dns.RcodeSuccess, true},
			// Asked over IPv4: client scope withholds the IPv6 addresses.
			{"www.example.com.", dns.TypeAAAA, dns.RcodeSuccess, false},
			{"denied.example.net.", dns.TypeA, dns.RcodeNameError, false},
			{"short.example.com.", dns.TypeA, dns.RcodeSuccess, true},
			{"rot.example.com.", dns.TypeA, dns.RcodeSuccess, true},
			{"evil.example.com.", dns.TypeA, dns.RcodeNameError, false},
		}
		var c net.Conn
		if err := tp.devA.Do(func() error {
			var err error
			c, err = net.DialTimeout("tcp", gwDNS, 2*time.Second)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var b []byte
		for i, q := range qs {
			b = append(b, tcpFrame(t, tcpTestQuery(q.name, q.qtype, uint16(1000+i)))...)
		}
		if _, err := c.Write(b); err != nil { // back to back, one write
			t.Fatal(err)
		}
		seen := make(map[uint16]bool)
		for range qs {
			r, err := readTCPReply(c)
			if err != nil {
				t.Fatalf("after %d replies: %v", len(seen), err)
			}
			i := int(r.Id) - 1000
			if i < 0 || i >= len(qs) || seen[r.Id] {
				t.Fatalf("reply id %d: no such query or answered twice", r.Id)
			}
			seen[r.Id] = true
			q := qs[i]
			if r.Question[0].Name != q.name || r.Question[0].Qtype != q.qtype || r.Rcode != q.rcode {
				t.Errorf("reply %d: %s %s %s, want %s %s %s", r.Id, r.Question[0].Name, dns.TypeToString[r.Question[0].Qtype],
					dns.RcodeToString[r.Rcode], q.name, dns.TypeToString[q.qtype], dns.RcodeToString[q.rcode])
			}
			if (len(r.Answer) > 0) != q.answer {
				t.Errorf("reply %d: %d answers, want some: %v", r.Id, len(r.Answer), q.answer)
			}
		}
	})

	t.Run("slowloris", func(t *testing.T) {
		testSlowloris(t, tp)
	})
}

// testSlowloris floods from device B: 250 connections from its own
// address (the per-client cap takes 16, the rest are refused at accept)
// and 250 from 25 more addresses of its network, 10 each (all taken).
// Each sends one byte of a length prefix and holds. Meanwhile device A
// gets UDP and TCP answers and device B UDP answers; the held
// connections are closed by the read timeout and counted.
func testSlowloris(t *testing.T, tp *topo) {
	const fromOwn, extraAddrs, perExtra = 250, 25, 10
	perClient := config.DefaultTCPMaxConnsPerClient
	for i := range extraAddrs {
		if _, err := tp.devB.Run("ip", "addr", "add", fmt.Sprintf("192.0.2.%d/24", 100+i), "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
	}
	before := tp.metrics(t)
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	hold := func(src string) {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", gwDevAddr4+":53")
		if err != nil {
			return // refused at accept before the connect returned
		}
		mu.Lock()
		held = append(held, c)
		mu.Unlock()
		_, _ = c.Write([]byte{0}) // one byte of a length prefix
	}
	if err := tp.devB.Do(func() error {
		for range fromOwn {
			hold(devBAddr4)
		}
		for i := range extraAddrs {
			for range perExtra {
				hold(fmt.Sprintf("192.0.2.%d", 100+i))
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	wantTaken := float64(perClient + extraAddrs*perExtra)
	peak := tp.metrics(t)
	t.Logf("flood held: %v TCP connections open, %v goroutines, %.1f MiB resident", peak["fqdngate_dns_tcp_connections"],
		peak["go_goroutines"], peak["process_resident_memory_bytes"]/(1<<20))
	// Throughout, until the flood has timed out: service for the others
	// over both transports, and for the flooder over UDP.
	timedOut := func(m map[string]float64) float64 {
		return m[`fqdngate_dns_tcp_timeouts_total{phase="read"}`] - before[`fqdngate_dns_tcp_timeouts_total{phase="read"}`]
	}
	rounds := 0
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, c := range []struct {
			ns   *lab.NS
			net  string
			what string
		}{{tp.devA, "udp", "device A over UDP"}, {tp.devA, "tcp", "device A over TCP"}, {tp.devB, "udp", "the flooding device over UDP"}} {
			r, err := tcpTestExchange(c.ns, c.net, "www.example.com.", dns.TypeA)
			if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
				t.Fatalf("round %d: %s: %v %v", rounds, c.what, r, err)
			}
		}
		rounds++
		if timedOut(tp.metrics(t)) >= wantTaken {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20s, %v of the %v held connections closed by the read timeout", timedOut(tp.metrics(t)), wantTaken)
		}
	}
	m := tp.metrics(t)
	refused := m[`fqdngate_dns_tcp_refused_total{reason="per_client_cap"}`] - before[`fqdngate_dns_tcp_refused_total{reason="per_client_cap"}`]
	if want := float64(fromOwn - perClient); refused != want {
		t.Errorf("%v connections refused for the per-client cap, want %v", refused, want)
	}
	if g := m[`fqdngate_dns_tcp_refused_total{reason="global_cap"}`]; g != 0 {
		t.Errorf("%v refused for the global cap, want none (500 is below it)", g)
	}
	if got := timedOut(m); got != wantTaken {
		t.Errorf("%v closed by the read timeout, want the %v taken", got, wantTaken)
	}
	// Its connections gone, the flooder is served over TCP again.
	if r, err := tcpTestExchange(tp.devB, "tcp", "www.example.com.", dns.TypeA); err != nil || r.Rcode != dns.RcodeSuccess {
		t.Errorf("device B over TCP after the flood: %v %v", r, err)
	}
	t.Logf("%d rounds of UDP and TCP queries answered during the flood", rounds)
}

// TestEDNSCompliance runs the cases of ISC's EDNS compliance tester
// (genreport: dns, aa, edns, edns1, edns@512, ednsopt, edns1opt, do,
// ednsflags, optlist, ednstcp) with dig from a device, with genreport's
// flags. genreport asks an authoritative server for its zone's SOA;
// fqdngate is a forwarding resolver for allowed names, so every case asks
// an allowed name's A record (DNSKEY for edns@512, as genreport) and
// asserts what RFC 6891 requires of a resolver.
func TestEDNSCompliance(t *testing.T) {
	labtest.Require(t, "dig")
	tp := newTopo(t, "enforce")
	const name = "www.example.com"
	type want struct {
		status   string
		answer   bool   // an A record in the answer section
		opt      bool   // an OPT record, of version 0
		do       bool   // DO echoed
		maxSize  int    // reply no larger, or truncated
		upstream bool   // the upstream was asked
		notFlag  string // a header flag that must not be set
	}
	tests := []struct {
		name string
		args []string
		want want
	}{
		{"dns", []string{"+noedns"}, want{status: "NOERROR", answer: true, upstream: true}},
		// genreport expects aa from an authoritative server. A resolver
		// answers from elsewhere and must not claim authority: asserted
		// is an answer without aa (with RD clear, fqdngate still
		// resolves: it is the device's only resolver).
		{"aa", []string{"+noedns", "+norec"}, want{status: "NOERROR", answer: true, notFlag: "aa", upstream: true}},
		{"edns", []string{"+edns=0"}, want{status: "NOERROR", answer: true, opt: true, upstream: true}},
		{"edns1", []string{"+edns=1", "+noednsneg"}, want{status: "BADVERS", opt: true}},
		// The reply fits the 512 bytes asked for, or is truncated
		// (genreport: no fallback needed); DO is echoed.
		{"edns@512", []string{"+edns=0", "+dnssec", "+bufsize=512", "+ignore", "-t", "DNSKEY"}, want{opt: true, do: true, maxSize: 512, upstream: true}},
		{"ednsopt", []string{"+edns=0", "+ednsopt=100"}, want{status: "NOERROR", answer: true, opt: true, upstream: true}},
		{"edns1opt", []string{"+edns=1", "+noednsneg", "+ednsopt=100"}, want{status: "BADVERS", opt: true}},
		{"do", []string{"+edns=0", "+dnssec"}, want{status: "NOERROR", answer: true, opt: true, do: true, upstream: true}},
		{"ednsflags", []string{"+edns=0", "+ednsflags=0x80"}, want{status: "NOERROR", answer: true, opt: true, upstream: true}},
		// genreport accepts the options a server supports echoed;
		// fqdngate supports none of NSID, ECS, EXPIRE and COOKIE, and
		// forwards none of them, so none may come back.
		{"optlist", []string{"+edns=0", "+nsid", "+subnet=0.0.0.0/0", "+expire", "+cookie"}, want{status: "NOERROR", answer: true, opt: true, upstream: true}},
		{"ednstcp", []string{"+edns=0", "+tcp"}, want{status: "NOERROR", answer: true, opt: true, upstream: true}},
	}
	statusRE := regexp.MustCompile(`status: ([A-Z]+)`)
	flagsRE := regexp.MustCompile(`;; flags:([^;]*);`)
	ednsRE := regexp.MustCompile(`; EDNS: version: (\d+), flags:([^;]*);`)
	sizeRE := regexp.MustCompile(`MSG SIZE\s+rcvd: (\d+)`)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			asked := tp.auth.count(name)
			args := append([]string{"@" + gwDevAddr4, "+time=2", "+tries=1", "+nocookie"}, tc.args...)
			if !strings.Contains(strings.Join(tc.args, " "), "-t ") {
				args = append(args, "-t", "A")
			}
			args = append(args, name)
			out, err := tp.devA.Run("dig", args...)
			if err != nil {
				t.Fatalf("dig %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			report := func(format string, a ...any) {
				t.Errorf("dig %s: %s\n%s", strings.Join(tc.args, " "), fmt.Sprintf(format, a...), out)
			}
			w := tc.want
			status := ""
			if m := statusRE.FindStringSubmatch(out); m != nil {
				status = m[1]
			}
			if w.status != "" && status != w.status {
				report("status %q, want %s", status, w.status)
			}
			if status == "FORMERR" || status == "SERVFAIL" || status == "NOTIMP" || status == "REFUSED" || status == "" {
				report("status %q", status)
			}
			hasA := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\.\s+\d+\s+IN\s+A\s`).MatchString(out)
			if hasA != w.answer {
				report("A record in the answer: %v, want %v", hasA, w.answer)
			}
			flags := ""
			if m := flagsRE.FindStringSubmatch(out); m != nil {
				flags = m[1]
			}
			if w.notFlag != "" && strings.Contains(" "+flags+" ", " "+w.notFlag+" ") {
				report("header flag %s set", w.notFlag)
			}
			m := ednsRE.FindStringSubmatch(out)
			switch {
			case (m != nil) != w.opt:
				report("OPT in the reply: %v, want %v", m != nil, w.opt)
			case m != nil:
				if m[1] != "0" {
					report("EDNS version %s, want 0", m[1])
				}
				if do := strings.Contains(m[2], "do"); do != w.do {
					report("DO echoed: %v, want %v", do, w.do)
				}
			}
			// Unknown flags (dig shows them as MBZ) and options are not
			// echoed, nor NSID, ECS, EXPIRE or a cookie.
			for _, bad := range []string{"MBZ:", "; OPT=", "; NSID", "; CLIENT-SUBNET", "; EXPIRE", "; COOKIE"} {
				if strings.Contains(out, bad) {
					report("%q in the reply", bad)
				}
			}
			if w.maxSize > 0 {
				sm := sizeRE.FindStringSubmatch(out)
				if sm == nil {
					report("no message size")
				} else if n, _ := strconv.Atoi(sm[1]); n > w.maxSize && !strings.Contains(flags, "tc") {
					report("reply of %d bytes, more than %d and not truncated", n, w.maxSize)
				}
			}
			if got := tp.auth.count(name) > asked; got != w.upstream {
				report("upstream asked: %v, want %v", got, w.upstream)
			}
		})
	}
}

func tcpTestQuery(name string, qtype, id uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = id
	return m
}

func tcpFrame(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{byte(len(b) >> 8), byte(len(b))}, b...)
}

func readTCPReply(c net.Conn) (*dns.Msg, error) {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return nil, err
	}
	b := make([]byte, int(hdr[0])<<8|int(hdr[1]))
	if _, err := io.ReadFull(c, b); err != nil {
		return nil, err
	}
	m := new(dns.Msg)
	return m, m.Unpack(b)
}

// closedWithoutAnswer is nil when the other end closed c (EOF or reset)
// without sending a byte.
func closedWithoutAnswer(c net.Conn) error {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 1))
	switch {
	case n > 0:
		return errors.New("the gateway answered")
	case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
		return nil
	}
	return err
}

// tcpTestExchange asks the gateway from ns over network, a new socket each time.
func tcpTestExchange(ns *lab.NS, network, name string, qtype uint16) (*dns.Msg, error) {
	var r *dns.Msg
	err := ns.Do(func() error {
		var err error
		r, _, err = (&dns.Client{Net: network, Timeout: 2 * time.Second}).Exchange(tcpTestQuery(name, qtype, dns.Id()), gwDevAddr4+":53")
		return err
	})
	return r, err
}
