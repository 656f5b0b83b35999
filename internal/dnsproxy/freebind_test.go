package dnsproxy

import (
	"context"
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/lab/labtest"
)

// TestListenFreeBind: a cluster node binds the VIP before keepalived gives
// it the address; without the free bind that fails, with it the listener
// serves over UDP and TCP as soon as the address is added, and not
// before (the address is nowhere to be reached).
func TestListenFreeBind(t *testing.T) {
	labtest.Require(t, "ip")
	ns := labtest.NS(t, "freebind")
	if _, err := ns.Run("ip", "link", "set", "lo", "up"); err != nil {
		t.Fatal(err)
	}
	answer := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
			A: []byte{203, 0, 113, 7}})
		_ = w.WriteMsg(m)
	})
	tests := []struct {
		vip, cidr string
	}{
		{"192.0.2.53:5353", "192.0.2.53/32"},
		{"[2001:db8::53]:5353", "2001:db8::53/128"},
	}
	for _, tc := range tests {
		t.Run(tc.vip, func(t *testing.T) {
			vip := netip.MustParseAddrPort(tc.vip)
			var srv *Server
			err := ns.Do(func() error {
				if s, err := Listen([]netip.AddrPort{vip}, answer, 2, TCPOptions{}); err == nil {
					_ = s.Shutdown(context.Background())
					return errors.New("bound an address the host does not hold without the free bind")
				} else if !errors.Is(err, syscall.EADDRNOTAVAIL) {
					return err
				}
				var err error
				srv, err = Listen([]netip.AddrPort{vip}, answer, 2, TCPOptions{}, WithFreeBind())
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
			ask := func(network string) error {
				return ns.Do(func() error {
					c := &dns.Client{Net: network, Timeout: 2 * time.Second}
					m := new(dns.Msg)
					m.SetQuestion("www.example.com.", dns.TypeA)
					r, _, err := c.Exchange(m, vip.String())
					if err != nil {
						return err
					}
					if len(r.Answer) != 1 {
						return errors.New("no answer: " + r.String())
					}
					return nil
				})
			}
			if err := ask("tcp"); err == nil {
				t.Fatal("answered on an address that is not there yet")
			}
			if _, err := ns.Run("ip", "addr", "add", tc.cidr, "dev", "lo", "nodad"); err != nil {
				t.Fatal(err)
			}
			for _, network := range []string{"udp", "tcp"} {
				if err := ask(network); err != nil {
					t.Errorf("%s after the address arrived: %v", network, err)
				}
			}
		})
	}
}
