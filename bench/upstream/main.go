// Command upstream is the benchmarks' fixed, fast authoritative server:
// every name under bench.example is a CNAME to a CDN-like name with 2 to 4
// A records (derived from the name, so answers are stable), TTL 300. It
// answers from several SO_REUSEPORT sockets so that it is not what limits
// the servers under test; the harness measures it on its own first.
package main

import (
	"context"
	"flag"
	"fmt"
	"hash/fnv"
	"log"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

func main() {
	listen := flag.String("listen", "127.0.0.53:5300", "UDP address to answer on")
	sockets := flag.Int("sockets", runtime.NumCPU(), "SO_REUSEPORT sockets")
	flag.Parse()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	for range *sockets {
		pc, err := lc.ListenPacket(context.Background(), "udp", *listen)
		if err != nil {
			log.Fatal(err)
		}
		_ = pc.(*net.UDPConn).SetReadBuffer(8 << 20)
		_ = pc.(*net.UDPConn).SetWriteBuffer(8 << 20)
		go serve(pc.(*net.UDPConn))
	}
	fmt.Fprintln(os.Stderr, "upstream ready on", *listen)
	select {}
}

const zone = "bench.example."

// serve is one socket's loop: read, answer, write; no goroutine per query,
// no allocation beyond the messages themselves.
func serve(c *net.UDPConn) {
	buf := make([]byte, 1500)
	out := make([]byte, 0, 1500)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			log.Fatal(err)
		}
		r := new(dns.Msg)
		if r.Unpack(buf[:n]) != nil {
			continue
		}
		m := answer(r)
		if b, err := m.PackBuffer(out); err == nil {
			_, _ = c.WriteToUDPAddrPort(b, from)
		}
	}
}

func answer(r *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	if !dns.IsSubDomain(zone, name) || (q.Qtype != dns.TypeA && q.Qtype != dns.TypeAAAA) {
		if !dns.IsSubDomain(zone, name) {
			m.Rcode = dns.RcodeNameError
		}
		return m
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	sum := h.Sum32()
	target := fmt.Sprintf("e%d.cdn.bench.example.", sum%100000)
	m.Answer = append(m.Answer, &dns.CNAME{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 300}, Target: target})
	n := 2 + int(sum%3)
	for i := range n {
		b := sum + uint32(i)*7919
		hdr := dns.RR_Header{Name: target, Class: dns.ClassINET, Ttl: 300}
		if q.Qtype == dns.TypeA {
			hdr.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IPv4(203, 0, byte(113), byte(b%254+1))})
			continue
		}
		// AAAA: a distinct address per name in 2001:db8::/32, so that the
		// unique mix installs new elements, as a CDN's churn does.
		hdr.Rrtype = dns.TypeAAAA
		ip := net.IP{0x20, 0x01, 0x0d, 0xb8, byte(sum >> 24), byte(sum >> 16), byte(sum >> 8), byte(sum), 15: byte(i + 1)}
		m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: ip})
	}
	return m
}
