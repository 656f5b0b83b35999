package upstream

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// legacyPool is the UDP path this package replaced (dnsproxy's pool
// before issue 22), kept to measure the new one against: idle connected
// sockets reused for up to 256 queries or 10 s, the ID the only check
// before the question.
type legacyPool struct {
	up   string
	idle chan *legacyConn
}

type legacyConn struct {
	*net.UDPConn
	uses    int
	created time.Time
}

func (p *legacyPool) exchange(m *dns.Msg) (*dns.Msg, error) {
	var pc *legacyConn
	select {
	case pc = <-p.idle:
	default:
		c, err := net.Dial("udp", p.up)
		if err != nil {
			return nil, err
		}
		pc = &legacyConn{UDPConn: c.(*net.UDPConn), created: time.Now()}
	}
	bp := getBuf(&udpBufs)
	defer putBuf(&udpBufs, bp)
	m.Id = newID()
	wire, err := m.PackBuffer(*bp)
	if err != nil {
		return nil, err
	}
	_ = pc.SetDeadline(time.Now().Add(time.Second))
	if _, err := pc.Write(wire); err != nil {
		pc.Close()
		return nil, err
	}
	buf := (*bp)[:cap(*bp)]
	for {
		n, err := pc.Read(buf)
		if err != nil {
			pc.Close()
			return nil, err
		}
		if n < headerLen || binary.BigEndian.Uint16(buf) != m.Id {
			continue
		}
		r := new(dns.Msg)
		if err := r.Unpack(buf[:n]); err != nil {
			pc.Close()
			return nil, err
		}
		if pc.uses++; pc.uses >= 256 || time.Since(pc.created) > 10*time.Second {
			pc.Close()
		} else {
			select {
			case p.idle <- pc:
			default:
				pc.Close()
			}
		}
		return r, nil
	}
}

// BenchmarkExchange forwards A queries to a loopback upstream, with the
// socket per query of this package (new) and with the reused sockets of
// the pool it replaced (old), in parallel as the handler does. The ratio
// of the two is the cost of a fresh source port per query.
func BenchmarkExchange(b *testing.B) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(answer)}
	go func() { _ = s.ActivateAndServe() }()
	defer func() { _ = s.Shutdown() }()
	up := netip.MustParseAddrPort(pc.LocalAddr().String())

	b.Run("new", func(b *testing.B) {
		p, err := New(plain(up), Options{Timeout: time.Second, CaseRandomization: true})
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			q := aQuery("www.example.com.")
			for pb.Next() {
				if _, err := p.Exchange(context.Background(), q); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("old", func(b *testing.B) {
		p := &legacyPool{up: up.String(), idle: make(chan *legacyConn, 256)}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			q := aQuery("www.example.com.")
			for pb.Next() {
				if _, err := p.exchange(q); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
