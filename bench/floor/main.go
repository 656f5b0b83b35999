// Command bench-floor is the least a Go forwarder can do per query, for
// the report's floor: the same four UDP system calls per query as
// fqdngate (read from the client, write to the upstream, read its reply,
// write to the client), with -parse the same miekg/dns unpacking of
// query and reply and packing of the reply, and nothing else: no policy,
// cache, ledger or firewall. What it reaches on one core bounds what any
// forwarder built this way can reach there.
//
// With -batch it is the same forwarder built the other way, as dnsdist
// is: one goroutine reads client queries with recvmmsg and sends them to
// the upstream with sendmmsg over one socket, another reads the replies
// with recvmmsg and sends them to the clients with sendmmsg, a table of
// outstanding IDs between them. It tells whether batching the system
// calls and leaving the goroutine per query would raise the floor.
package main

import (
	"encoding/binary"
	"flag"
	"log"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/miekg/dns"
)

func main() {
	listen := flag.String("listen", "127.0.0.2:53", "UDP address to serve")
	upstream := flag.String("upstream", "127.0.0.53:5300", "UDP upstream")
	workers := flag.Int("workers", 128, "goroutines, each with its own upstream socket")
	parse := flag.Bool("parse", true, "unpack query and reply and pack the reply with miekg/dns")
	batched := flag.Bool("batch", false, "two goroutines with recvmmsg and sendmmsg instead of workers")
	flag.Parse()
	up, err := netip.ParseAddrPort(*upstream)
	if err != nil {
		log.Fatal(err)
	}
	lc, err := net.ListenPacket("udp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	c := lc.(*net.UDPConn)
	_ = c.SetReadBuffer(4 << 20)
	if *batched {
		if err := startBatched(c, net.UDPAddrFromAddrPort(up), *parse); err != nil {
			log.Fatal(err)
		}
	} else {
		for range *workers {
			uc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(up))
			if err != nil {
				log.Fatal(err)
			}
			go serve(c, uc, *parse)
		}
	}
	// Started in the background by a script, the process has SIGINT
	// ignored; the harness stops it with SIGINT or SIGTERM.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
}

func serve(c, uc *net.UDPConn, parse bool) {
	buf := make([]byte, 4096)
	rbuf := make([]byte, 4096)
	out := make([]byte, 0, 4096)
	var id uint16
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			log.Fatal(err)
		}
		if n < 12 {
			continue
		}
		cid := binary.BigEndian.Uint16(buf)
		id++
		q, ok := withID(buf[:n], id, parse, out)
		if !ok {
			continue
		}
		if _, err := uc.Write(q); err != nil {
			continue
		}
		rn, err := uc.Read(rbuf)
		if err != nil || rn < 12 {
			continue
		}
		r, ok := withID(rbuf[:rn], cid, parse, out)
		if !ok {
			continue
		}
		_, _ = c.WriteToUDPAddrPort(r, from)
	}
}

// withID returns message b with ID id in out: unpacked, changed and
// packed with -parse, as fqdngate would, else copied and changed.
func withID(b []byte, id uint16, parse bool, out []byte) ([]byte, bool) {
	if !parse {
		out = append(out[:0], b...)
		binary.BigEndian.PutUint16(out, id)
		return out, true
	}
	m := new(dns.Msg)
	if m.Unpack(b) != nil {
		return nil, false
	}
	m.Id = id
	p, err := m.PackBuffer(out)
	return p, err == nil
}
