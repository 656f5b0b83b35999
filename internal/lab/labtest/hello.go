package labtest

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
)

// ClientHello is the first flight of a Go crypto/tls client for
// serverName (empty: none), read off a pipe: the bytes a real client
// sends, hybrid post-quantum key share included.
func ClientHello(t testing.TB, serverName string) []byte {
	t.Helper()
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	cfg := &tls.Config{ServerName: serverName, InsecureSkipVerify: serverName == ""}
	go func() { _ = tls.Client(c, cfg).Handshake() }()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(s, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(s, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}
