package main

import (
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestBatchedForwards checks that -batch answers each client with the
// upstream's reply to its own question, under the client's own ID, with
// many queries outstanding at once.
func TestBatchedForwards(t *testing.T) {
	for _, parse := range []bool{true, false} {
		up, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer up.Close()
		go func() { // echoes the question's name as a TXT answer
			buf := make([]byte, 4096)
			for {
				n, from, err := up.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				q := new(dns.Msg)
				if q.Unpack(buf[:n]) != nil {
					continue
				}
				r := new(dns.Msg)
				r.SetReply(q)
				r.Answer = []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 1}, Txt: []string{q.Question[0].Name}}}
				w, _ := r.Pack()
				_, _ = up.WriteToUDPAddrPort(w, from)
			}
		}()
		lc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer lc.Close()
		if err := startBatched(lc, up.LocalAddr().(*net.UDPAddr), parse); err != nil {
			t.Fatal(err)
		}
		cl, err := net.DialUDP("udp", nil, lc.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		const n = 200
		names := map[uint16]string{}
		for i := range n {
			q := new(dns.Msg)
			q.SetQuestion(dns.Fqdn(string(rune('a'+i%26))+"x"+string(rune('a'+i/26))+".example"), dns.TypeTXT)
			q.Id = uint16(1000 + i)
			names[q.Id] = q.Question[0].Name
			w, _ := q.Pack()
			if _, err := cl.Write(w); err != nil {
				t.Fatal(err)
			}
		}
		_ = cl.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4096)
		for range n {
			k, err := cl.Read(buf)
			if err != nil {
				t.Fatalf("parse=%v: %d replies missing: %v", parse, len(names), err)
			}
			r := new(dns.Msg)
			if err := r.Unpack(buf[:k]); err != nil {
				t.Fatal(err)
			}
			want, ok := names[r.Id]
			if !ok {
				t.Fatalf("parse=%v: reply with ID %d, not one asked or asked twice", parse, r.Id)
			}
			if got := r.Answer[0].(*dns.TXT).Txt[0]; got != want {
				t.Errorf("parse=%v: ID %d: answer for %s, asked %s", parse, r.Id, got, want)
			}
			delete(names, r.Id)
		}
	}
}
