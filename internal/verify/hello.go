package verify

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strings"

	"golang.org/x/crypto/cryptobyte"
)

// Bounds on what a flow may send before its verdict.
const (
	// MaxHelloBytes bounds the bytes of a ClientHello put together from
	// segments: a hybrid post-quantum ClientHello is under 2 kB, and
	// RFC 8446 caps a record at 16 KiB.
	MaxHelloBytes = 16 << 10
	// MaxRequestHead bounds an HTTP request head.
	MaxRequestHead = 8 << 10
)

// Errors of the parsers. ErrIncomplete asks for more bytes; the others
// are final.
var (
	ErrIncomplete = errors.New("incomplete")
	ErrNotTLS     = errors.New("not a TLS ClientHello")
	ErrNotHTTP    = errors.New("not an HTTP request")
	ErrTooLong    = errors.New("longer than the bound")
)

// TLS numbers (RFC 8446, RFC 6066, draft-ietf-tls-esni).
const (
	recordHandshake   = 22
	typeClientHello   = 1
	extServerName     = 0
	extECH            = 0xfe0d
	echOuter          = 0
	sniHostName       = 0
	recordHeaderLen   = 5
	handshakeHeadLen  = 4
	maxRecordFragment = 1<<14 + 256
)

// Hello is what a ClientHello says about the server it wants.
type Hello struct {
	// ServerName is the server_name host name, lower case without a
	// trailing dot; empty when the ClientHello has none.
	ServerName string
	// ECH: the ClientHello carries an outer encrypted_client_hello;
	// ServerName is then the outer (public) name.
	ECH bool
}

// ParseClientHello reads a ClientHello from the first bytes a client
// sent, which may span several TLS records. It returns ErrIncomplete
// while the bytes end before the ClientHello does.
func ParseClientHello(b []byte) (Hello, error) {
	msg, err := handshakeMessage(b)
	if err != nil {
		return Hello{}, err
	}
	h, err := parseHelloBody(msg)
	if err != nil {
		return Hello{}, err
	}
	return h, nil
}

// handshakeMessage puts the first handshake message together from the
// records it spans.
func handshakeMessage(b []byte) ([]byte, error) {
	var hs []byte
	s := cryptobyte.String(b)
	for {
		var typ uint8
		var vers uint16
		if len(s) < recordHeaderLen {
			return nil, incompleteOr(len(b))
		}
		if !s.ReadUint8(&typ) || typ != recordHandshake || !s.ReadUint16(&vers) || vers>>8 != 3 {
			return nil, ErrNotTLS
		}
		var frag cryptobyte.String
		var n uint16
		if !s.ReadUint16(&n) {
			return nil, ErrNotTLS
		}
		if n == 0 || int(n) > maxRecordFragment {
			return nil, ErrNotTLS
		}
		if !s.ReadBytes((*[]byte)(&frag), int(n)) {
			return nil, incompleteOr(len(b))
		}
		hs = append(hs, frag...)
		if len(hs) >= handshakeHeadLen {
			if hs[0] != typeClientHello {
				return nil, ErrNotTLS
			}
			want := handshakeHeadLen + (int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3]))
			if want > MaxHelloBytes {
				return nil, ErrTooLong
			}
			if len(hs) >= want {
				return hs[:want], nil
			}
		}
	}
}

func incompleteOr(n int) error {
	if n >= MaxHelloBytes {
		return ErrTooLong
	}
	return ErrIncomplete
}

// parseHelloBody reads a whole ClientHello handshake message, in the
// manner of crypto/tls's clientHelloMsg.unmarshal: every field through
// its length prefix, unknown extensions skipped.
func parseHelloBody(msg []byte) (Hello, error) {
	var h Hello
	s := cryptobyte.String(msg)
	var typ uint8
	var body cryptobyte.String
	if !s.ReadUint8(&typ) || typ != typeClientHello || !s.ReadUint24LengthPrefixed(&body) {
		return h, ErrNotTLS
	}
	var vers uint16
	var random []byte
	var sessionID, suites, compression cryptobyte.String
	if !body.ReadUint16(&vers) || !body.ReadBytes(&random, 32) ||
		!body.ReadUint8LengthPrefixed(&sessionID) ||
		!body.ReadUint16LengthPrefixed(&suites) ||
		!body.ReadUint8LengthPrefixed(&compression) {
		return h, ErrNotTLS
	}
	if body.Empty() {
		// No extensions at all (TLS 1.0-era): no server_name either.
		return h, nil
	}
	var exts cryptobyte.String
	if !body.ReadUint16LengthPrefixed(&exts) || !body.Empty() {
		return h, ErrNotTLS
	}
	var seen []uint16
	for !exts.Empty() {
		var ext uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&ext) || !exts.ReadUint16LengthPrefixed(&data) {
			return h, ErrNotTLS
		}
		// A second extension of a type (RFC 8446 section 4.2 forbids it)
		// could name another server to a server that reads the last one.
		if slices.Contains(seen, ext) {
			return h, ErrNotTLS
		}
		seen = append(seen, ext)
		switch ext {
		case extServerName:
			name, err := parseServerName(data)
			if err != nil {
				return h, err
			}
			h.ServerName = name
		case extECH:
			var kind uint8
			if data.ReadUint8(&kind) && kind == echOuter {
				h.ECH = true
			}
		}
	}
	return h, nil
}

func parseServerName(data cryptobyte.String) (string, error) {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || list.Empty() {
		return "", ErrNotTLS
	}
	host, found := "", false
	for !list.Empty() {
		var kind uint8
		var name cryptobyte.String
		if !list.ReadUint8(&kind) || !list.ReadUint16LengthPrefixed(&name) {
			return "", ErrNotTLS
		}
		if kind == sniHostName {
			// One host_name (RFC 6066 section 3): a second could be the
			// one the server reads.
			if found {
				return "", ErrNotTLS
			}
			host, found = normalName(string(name)), true
		}
	}
	return host, nil
}

// ParseRequestHost reads the Host of the HTTP/1.x request head at the
// start of b (lower case, without port or trailing dot). It returns
// ErrIncomplete while the head has not ended.
func ParseRequestHost(b []byte) (string, error) {
	if len(b) == 0 {
		return "", ErrIncomplete
	}
	if i := bytes.IndexAny(b, " \r\n"); i == 0 || (i < 0 && !isToken(b)) || (i > 0 && !isToken(b[:i])) {
		return "", ErrNotHTTP
	}
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) >= MaxRequestHead {
			return "", ErrTooLong
		}
		return "", ErrIncomplete
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b[:end+4])))
	if err != nil {
		return "", ErrNotHTTP
	}
	host := req.Host
	// An absolute URI's host wins over the Host header (RFC 9112
	// section 3.2.2), but not in every server: both must name one host.
	if req.URL.Host != "" && hostHeader(b[:end+4]) != "" && hostOnly(hostHeader(b[:end+4])) != hostOnly(req.URL.Host) {
		return "", ErrNotHTTP
	}
	return hostOnly(host), nil
}

// hostHeader is the Host header of a request head (http.ReadRequest
// takes it out of the header map).
func hostHeader(head []byte) string {
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(head)))
	if _, err := r.ReadLine(); err != nil {
		return ""
	}
	h, err := r.ReadMIMEHeader()
	if err != nil {
		return ""
	}
	return h.Get("Host")
}

// hostOnly is a Host value without its port, in normal form.
func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return normalName(host)
}

// isToken reports whether b can start an HTTP method (RFC 9110 token
// characters).
func isToken(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return len(b) > 0
}

// normalName lowers ASCII letters only: a name with other bytes matches
// no answered name (strings.ToLower would map the Kelvin sign to k).
func normalName(s string) string {
	b := []byte(strings.TrimSuffix(s, "."))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
