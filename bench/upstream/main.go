// Command upstream is the benchmarks' fixed, fast authoritative server:
// every name under bench.example is a CNAME to a CDN-like name with 2 to 4
// A records (derived from the name, so answers are stable), TTL 300. It
// answers from several SO_REUSEPORT sockets so that it is not what limits
// the servers under test; the harness measures it on its own first.
package main

import (
	"flag"
	"fmt"
	"hash/fnv"
	"log"
	"net"
	"os"
	"runtime"
	"strings"

	"github.com/miekg/dns"
)

func main() {
	listen := flag.String("listen", "127.0.0.53:5300", "UDP address to answer on")
	sockets := flag.Int("sockets", runtime.NumCPU(), "SO_REUSEPORT sockets")
	flag.Parse()
	h := dns.HandlerFunc(answer)
	for range *sockets {
		s := &dns.Server{Addr: *listen, Net: "udp", Handler: h, ReusePort: true, UDPSize: 1232}
		go func() {
			if err := s.ListenAndServe(); err != nil {
				log.Fatal(err)
			}
		}()
	}
	fmt.Fprintln(os.Stderr, "upstream ready on", *listen)
	select {}
}

const zone = "bench.example."

func answer(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	if !dns.IsSubDomain(zone, name) || (q.Qtype != dns.TypeA && q.Qtype != dns.TypeAAAA) {
		if !dns.IsSubDomain(zone, name) {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
		return
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
	_ = w.WriteMsg(m)
}
