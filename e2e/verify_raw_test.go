package e2e

import (
	"bytes"
	be "encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fqdngate/fqdngate/internal/lab"
	"github.com/fqdngate/fqdngate/internal/lab/labtest"
	"github.com/fqdngate/fqdngate/internal/monitor"
)

// rawTCP is a TCP client written by hand on a raw socket in a device's
// namespace: it sends the segments a test chooses (out of order, a
// second SYN, bytes in a SYN), as a client that controls its own TCP
// stack can and no socket API lets a test do.
type rawTCP struct {
	t            *testing.T
	fd, rfd      int
	src, dst     netip.Addr
	sport, dport uint16
	isn, next    uint32 // this side's first sequence number; the server's next
}

// rawMark marks the raw socket's packets: the namespace's kernel, which
// knows no socket for these flows, would reset them on the server's
// SYN-ACK, so every reset but the test's own is dropped on the way out.
const rawMark = 0x5157

func newRawTCP(t *testing.T, ns *lab.NS, src, dst string, sport, dport uint16, isn uint32) *rawTCP {
	t.Helper()
	r := &rawTCP{t: t, src: netip.MustParseAddr(src), dst: netip.MustParseAddr(dst), sport: sport, dport: dport, isn: isn}
	err := ns.Do(func() error {
		var err error
		if r.fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_TCP); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(r.fd, unix.SOL_SOCKET, unix.SO_MARK, rawMark); err != nil {
			return err
		}
		r.rfd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_TCP)
		return err
	})
	if err != nil {
		t.Fatalf("raw socket: %v", err)
	}
	table := fmt.Sprintf("rawtcp%d_%d", sport, isn)
	rules := fmt.Sprintf("add table inet %[1]s; add chain inet %[1]s out { type filter hook output priority 0; }; "+
		"add rule inet %[1]s out tcp sport %[2]d tcp flags & rst == rst meta mark != %[3]d drop", table, sport, rawMark)
	if out, err := ns.Run("nft", rules); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	t.Cleanup(func() {
		unix.Close(r.fd)
		unix.Close(r.rfd)
		_, _ = ns.Run("nft", "delete", "table", "inet", table)
	})
	return r
}

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
)

// send sends one segment.
func (r *rawTCP) send(flags byte, seq uint32, data []byte) {
	r.t.Helper()
	var ack uint32
	if flags&tcpACK != 0 {
		ack = r.next
	}
	seg := make([]byte, 20, 20+len(data))
	be.BigEndian.PutUint16(seg[0:], r.sport)
	be.BigEndian.PutUint16(seg[2:], r.dport)
	be.BigEndian.PutUint32(seg[4:], seq)
	be.BigEndian.PutUint32(seg[8:], ack)
	seg[12], seg[13] = 5<<4, flags
	be.BigEndian.PutUint16(seg[14:], 65535)
	seg = append(seg, data...)
	be.BigEndian.PutUint16(seg[16:], tcpChecksum(r.src, r.dst, seg))
	if err := unix.Sendto(r.fd, seg, 0, &unix.SockaddrInet4{Addr: r.dst.As4()}); err != nil {
		r.t.Fatalf("raw send: %v", err)
	}
}

func tcpChecksum(src, dst netip.Addr, seg []byte) uint16 {
	s, d := src.As4(), dst.As4()
	pseudo := append(append(append([]byte(nil), s[:]...), d[:]...), 0, unix.IPPROTO_TCP, byte(len(seg)>>8), byte(len(seg)))
	var sum uint32
	for _, b := range [][]byte{pseudo, seg} {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// recv waits, at most 3 s, for a segment of this flow from the server
// whose flags include all of want; it returns its flags and sequence
// number.
func (r *rawTCP) recv(want byte) (byte, uint32, error) {
	deadline := time.Now().Add(3 * time.Second)
	buf := make([]byte, 65536)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return 0, 0, errors.New("no such segment within 3s")
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		_ = unix.SetsockoptTimeval(r.rfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		n, _, err := unix.Recvfrom(r.rfd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return 0, 0, err
		}
		p := buf[:n]
		if n < 20 || p[9] != unix.IPPROTO_TCP {
			continue
		}
		ihl := int(p[0]&0x0f) * 4
		if n < ihl+20 {
			continue
		}
		tcp := p[ihl:]
		if be.BigEndian.Uint16(tcp[0:]) != r.dport || be.BigEndian.Uint16(tcp[2:]) != r.sport {
			continue
		}
		if flags := tcp[13]; flags&want == want {
			return flags, be.BigEndian.Uint32(tcp[4:]), nil
		}
	}
}

// handshake makes the connection: SYN, the server's SYN-ACK, ACK.
func (r *rawTCP) handshake() {
	r.t.Helper()
	r.send(tcpSYN, r.isn, nil)
	_, seq, err := r.recv(tcpSYN | tcpACK)
	if err != nil {
		r.t.Fatalf("no SYN-ACK from %s:%d: %v", r.dst, r.dport, err)
	}
	r.next = seq + 1
	r.send(tcpACK, r.isn+1, nil)
}

// byteSink is a TCP server that keeps what each client port sent.
type byteSink struct {
	mu  sync.Mutex
	got map[int][]byte
}

func startByteSink(t *testing.T, ns *lab.NS, port int) *byteSink {
	t.Helper()
	ln := listenIn(t, ns, port)
	b := &byteSink{got: make(map[int][]byte)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				from := c.RemoteAddr().(*net.TCPAddr).Port
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					b.mu.Lock()
					b.got[from] = append(b.got[from], buf[:n]...)
					b.mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return b
}

func (b *byteSink) from(port int) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.got[port]...)
}

// TestVerifyCraftedSegments: a client that writes its own TCP segments
// cannot show fqdngate one name and the server another. The server on
// tcp/9443 (a tls_port of the rule) of the CDN address keeps every byte
// it gets.
func TestVerifyCraftedSegments(t *testing.T) {
	tp, _ := newVerifyTopoClients(t, strings.Replace(verifyClients("enforce"), `"tcp/443"]`, `"tcp/443", "tcp/9443"]
        tls_ports: [9443]`, 1))
	tp.resolveA(t, "cdn.example.com.", cdnAddr)
	sink := startByteSink(t, tp.inet, 9443)
	good, evil := labtest.ClientHello(t, "cdn.example.com"), labtest.ClientHello(t, "www.other.example")

	t.Run("a second SYN does not move where the bytes start", func(t *testing.T) {
		// After the handshake, a SYN that says the bytes start len(evil)
		// further on, the answered name's ClientHello there, then the
		// other name's in front of it: the server would read the other
		// name first.
		const port = 41001
		r := newRawTCP(t, tp.devA, devAAddr4, cdnAddr, port, 9443, 1_000_000)
		r.handshake()
		r.send(tcpSYN, r.isn+uint32(len(evil)), nil)
		r.send(tcpPSH|tcpACK, r.isn+1+uint32(len(evil)), good)
		r.send(tcpPSH|tcpACK, r.isn+1, evil)
		if _, _, err := r.recv(tcpRST); err != nil {
			got := sink.from(port)
			t.Fatalf("no reset: %v; the server got %d bytes, the other name first: %v", err, len(got), bytes.HasPrefix(got, evil))
		}
		if got := sink.from(port); len(got) != 0 {
			t.Errorf("the server got %d bytes of a flow reset", len(got))
		}
		// Judged on neither start: the SYNs disagree on where the bytes
		// begin.
		e := tp.flowDrop(t, monitor.NotTLS, "cdn.example.com", false)
		if e.Port != "tcp/9443" || !strings.Contains(e.Message, "two first sequence numbers") {
			t.Errorf("explained as %+v", e)
		}
	})

	t.Run("a SYN with another first sequence number before the handshake", func(t *testing.T) {
		// The first SYN never reaches the server (a hop after the
		// gateway drops it; here the server's own table), the second,
		// with another sequence number, makes the connection. The
		// answered name's ClientHello at the first SYN's start would be
		// judged and thrown away by the server; the other name's at the
		// second's would pass unjudged.
		const port, isnA, isnB = 41003, 4_000_000, 4_020_000
		table := "dropsyn"
		rules := fmt.Sprintf("add table inet %[1]s; add chain inet %[1]s in { type filter hook input priority 0; }; "+
			"add rule inet %[1]s in tcp dport 9443 tcp sequence %[2]d drop", table, isnA)
		if out, err := tp.inet.Run("nft", rules); err != nil {
			t.Fatalf("nft: %v: %s", err, out)
		}
		t.Cleanup(func() { _, _ = tp.inet.Run("nft", "delete", "table", "inet", table) })
		r := newRawTCP(t, tp.devA, devAAddr4, cdnAddr, port, 9443, isnA)
		r.send(tcpSYN, isnA, nil)
		// The second SYN once the first has its conntrack entry: one
		// that comes while the first waits for its verdict makes an
		// entry of its own, which the kernel drops as a clash.
		waitCond(t, "the gateway's conntrack entry of the first SYN", 5*time.Second, func() bool {
			out, err := tp.gw.Run("conntrack", "-L", "-p", "tcp", "--sport", fmt.Sprint(port))
			return err == nil && strings.Contains(out, "SYN_SENT")
		})
		r.isn = isnB
		r.handshake()
		r.send(tcpPSH|tcpACK, isnA+1, good)
		if _, _, err := r.recv(tcpRST); err != nil {
			t.Fatalf("the answered name at the first SYN's start: no reset: %v", err)
		}
		r.send(tcpPSH|tcpACK, isnB+1, evil)
		if got := sink.from(port); len(got) != 0 {
			t.Errorf("the server got %d bytes, the other name first: %v", len(got), bytes.HasPrefix(got, evil))
		}
	})

	t.Run("bytes in a SYN on a reused port are not judged", func(t *testing.T) {
		// A verified flow, reset by the client; then a SYN on the same
		// port that carries the other name's ClientHello, and that name
		// again after the handshake. Neither may pass on the first
		// flow's verdict.
		const port = 41002
		r := newRawTCP(t, tp.devA, devAAddr4, cdnAddr, port, 9443, 2_000_000)
		r.handshake()
		r.send(tcpPSH|tcpACK, r.isn+1, good)
		waitCond(t, "the server gets the answered name's ClientHello", 5*time.Second, func() bool {
			return len(sink.from(port)) == len(good)
		})
		r.send(tcpRST, r.isn+1+uint32(len(good)), nil)

		r2 := newRawTCP(t, tp.devA, devAAddr4, cdnAddr, port, 9443, 3_000_000)
		r2.send(tcpSYN, r2.isn, evil) // dropped: the client would send its SYN again
		r2.handshake()
		r2.send(tcpPSH|tcpACK, r2.isn+1, evil)
		if _, _, err := r2.recv(tcpRST); err != nil {
			t.Fatalf("the other name on the reused port: no reset: %v", err)
		}
		if got := sink.from(port); len(got) != len(good) {
			t.Errorf("the server got %d bytes from the port, want only the first flow's %d", len(got), len(good))
		}
	})
}
