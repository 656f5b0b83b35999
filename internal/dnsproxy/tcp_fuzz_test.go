package dnsproxy

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzTCPStream writes arbitrary bytes on a connection to the TCP
// listener and closes its sending side. Whatever arrives: what comes back
// is whole framed replies that unpack, the connection ends, and the
// listener serves the next connection.
func FuzzTCPStream(f *testing.F) {
	q, _ := query("x.example.", dns.TypeA, false).Pack()
	framed := append([]byte{byte(len(q) >> 8), byte(len(q))}, q...)
	resp := append([]byte(nil), framed...)
	resp[4] |= 0x80 // QR: a response, not answered
	for _, seed := range [][]byte{
		framed,
		append(append([]byte(nil), framed...), framed...), // pipelined
		{0},              // one byte of a length
		{0, 0},           // an empty message
		{0xff, 0xff, 1},  // longer than fqdngate reads
		{0, 12, 1, 2, 3}, // a header cut short
		resp,
		append(append([]byte(nil), framed...), 0, 40, 0xde, 0xad), // then garbage
	} {
		f.Add(seed)
	}
	addr, _ := startTCP(f, answering(), TCPOptions{IdleTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, MaxConnsPerClient: 256})
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(in); err != nil {
			return // closed while writing: a malformed stream may be
		}
		_ = c.(*net.TCPConn).CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		out, err := io.ReadAll(c)
		reset := errors.Is(err, syscall.ECONNRESET)
		if err != nil && !reset {
			t.Fatalf("the connection did not end: %v", err)
		}
		for len(out) > 0 {
			if len(out) < 2 || len(out) < 2+(int(out[0])<<8|int(out[1])) {
				if reset {
					return // the reset may cut what was in flight
				}
				t.Fatalf("a reply cut short: %x", out)
			}
			n := int(out[0])<<8 | int(out[1])
			m := new(dns.Msg)
			if err := m.Unpack(out[2 : 2+n]); err != nil || !m.Response {
				t.Fatalf("reply does not unpack as a response: %v", err)
			}
			out = out[2+n:]
		}
	})
}
