package verify

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/crypto/cryptobyte"

	"github.com/fqdngate/fqdngate/internal/lab/labtest"
)

// goClientHello is the first flight of a Go crypto/tls client for
// serverName (empty: none).
func goClientHello(t testing.TB, serverName string) []byte { return labtest.ClientHello(t, serverName) }

// synthHello builds a ClientHello with the given extensions (type, data)
// in one record, or split over records of at most frag bytes.
func synthHello(frag int, exts ...[2]any) []byte {
	var b cryptobyte.Builder
	b.AddUint8(typeClientHello)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16(0x0303)
		b.AddBytes(make([]byte, 32))
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {})
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(0x1301) })
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(0) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, e := range exts {
				b.AddUint16(uint16(e[0].(int)))
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e[1].([]byte)) })
			}
		})
	})
	msg := b.BytesOrPanic()
	if frag <= 0 {
		frag = len(msg)
	}
	var out []byte
	for len(msg) > 0 {
		n := min(frag, len(msg))
		out = append(out, recordHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

func sni(name string) [2]any {
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint8(sniHostName)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(name)) })
	})
	return [2]any{extServerName, b.BytesOrPanic()}
}

// echOuterExt is an outer encrypted_client_hello: HPKE suite, config id,
// enc and payload.
func echOuterExt() [2]any {
	var b cryptobyte.Builder
	b.AddUint8(echOuter)
	b.AddUint16(1)
	b.AddUint16(1)
	b.AddUint8(7)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(make([]byte, 32)) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(make([]byte, 200)) })
	return [2]any{extECH, b.BytesOrPanic()}
}

func TestParseClientHello(t *testing.T) {
	goHello := goClientHello(t, "Prod.Update.Sphere.Azure.Net")
	// Captured from openssl s_client -servername openssl.example and
	// curl https://curl.example:4433/ (OpenSSL and curl of Debian).
	opensslHello, err := os.ReadFile("testdata/clienthello-openssl.bin")
	if err != nil {
		t.Fatal(err)
	}
	curlHello, err := os.ReadFile("testdata/clienthello-curl.bin")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      []byte
		want    Hello
		wantErr error
	}{
		{"go crypto/tls", goHello, Hello{ServerName: "prod.update.sphere.azure.net"}, nil},
		{"openssl s_client", opensslHello, Hello{ServerName: "openssl.example"}, nil},
		{"curl", curlHello, Hello{ServerName: "curl.example"}, nil},
		{"curl, cut", curlHello[:300], Hello{}, ErrIncomplete},
		{"go crypto/tls, no server name", goClientHello(t, ""), Hello{}, nil},
		{"go, first segment only", goHello[:600], Hello{}, ErrIncomplete},
		{"go, record header only", goHello[:5], Hello{}, ErrIncomplete},
		{"go, three bytes", goHello[:3], Hello{}, ErrIncomplete},
		{"go, trailing bytes after the hello", append(append([]byte(nil), goHello...), 23, 3, 3, 0, 1, 0), Hello{ServerName: "prod.update.sphere.azure.net"}, nil},
		{"sni after grease extensions", synthHello(0, [2]any{0x0a0a, []byte{}}, [2]any{0xfafa, []byte{0}}, sni("a.example.")), Hello{ServerName: "a.example"}, nil},
		{"grease alone is not ech", synthHello(0, [2]any{0x1a1a, []byte{}}, sni("a.example")), Hello{ServerName: "a.example"}, nil},
		{"ech outer, judged by outer name", synthHello(0, echOuterExt(), sni("public.example")), Hello{ServerName: "public.example", ECH: true}, nil},
		{"ech inner type is not outer", synthHello(0, [2]any{extECH, []byte{1}}, sni("a.example")), Hello{ServerName: "a.example"}, nil},
		{"hello over several records", synthHello(40, [2]any{0x0017, make([]byte, 300)}, sni("b.example")), Hello{ServerName: "b.example"}, nil},
		{"several records, cut", synthHello(40, [2]any{0x0017, make([]byte, 300)}, sni("b.example"))[:100], Hello{}, ErrIncomplete},
		{"http request", []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Hello{}, ErrNotTLS},
		{"ssh banner", []byte("SSH-2.0-OpenSSH_9.6\r\n"), Hello{}, ErrNotTLS},
		{"alert record", []byte{21, 3, 3, 0, 2, 2, 40}, Hello{}, ErrNotTLS},
		{"server hello", []byte{22, 3, 3, 0, 4, 2, 0, 0, 0}, Hello{}, ErrNotTLS},
		{"empty record", []byte{22, 3, 1, 0, 0}, Hello{}, ErrNotTLS},
		{"length beyond the bound", []byte{22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff}, Hello{}, ErrTooLong},
		{"bad sni list", synthHello(0, [2]any{extServerName, []byte{0, 5, 0}}), Hello{}, ErrNotTLS},
		// A server that reads the last of two could see another name.
		{"two server_name extensions", synthHello(0, sni("good.example"), sni("evil.example")), Hello{}, ErrNotTLS},
		{"two extensions of one type", synthHello(0, [2]any{0x0017, []byte{}}, sni("a.example"), [2]any{0x0017, []byte{}}), Hello{}, ErrNotTLS},
		{"two host names in one list", synthHello(0, [2]any{extServerName, []byte{0, 15, 0, 0, 1, 'a', 0, 0, 8, 'e', 'v', 'i', 'l', '.', 'c', 'o', 'm'}}), Hello{}, ErrNotTLS},
		// Only ASCII letters are lowered: the Kelvin sign is not k.
		{"a name with a non-ascii letter", synthHello(0, sni("\u212Aey.example")), Hello{ServerName: "\u212Aey.example"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseClientHello(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseRequestHost(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        error
	}{
		{"host", "GET / HTTP/1.1\r\nHost: A.Example\r\nAccept: */*\r\n\r\n", "a.example", nil},
		{"host with port", "POST /x HTTP/1.1\r\nHost: a.example:8080\r\n\r\nbody", "a.example", nil},
		{"ipv6 literal", "GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n", "2001:db8::1", nil},
		{"no host, http/1.0", "GET / HTTP/1.0\r\n\r\n", "", nil},
		{"head not ended", "GET / HTTP/1.1\r\nHost: a.example\r\n", "", ErrIncomplete},
		{"method only", "GE", "", ErrIncomplete},
		{"tls on port 80", "\x16\x03\x01\x00\x05hello", "", ErrNotHTTP},
		{"garbage line", "\x00\x01\x02 x\r\n\r\n", "", ErrNotHTTP},
		{"bad request line", "GET\r\n\r\n", "", ErrNotHTTP},
		{"head beyond the bound", "GET / HTTP/1.1\r\nX: " + string(make([]byte, MaxRequestHead)), "", ErrTooLong},
		{"absolute uri, same host", "GET http://A.example/x HTTP/1.1\r\nHost: a.example:80\r\n\r\n", "a.example", nil},
		{"absolute uri, no host header", "GET http://a.example/x HTTP/1.1\r\n\r\n", "a.example", nil},
		// Servers differ on which of the two wins.
		{"absolute uri naming another host", "GET http://good.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n", "", ErrNotHTTP},
		{"two host headers", "GET / HTTP/1.1\r\nHost: good.example\r\nHost: evil.example\r\n\r\n", "", ErrNotHTTP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequestHost([]byte(tt.in))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzClientHello(f *testing.F) {
	f.Add(goClientHello(f, "a.example"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseClientHello(b)
		if err != nil && h != (Hello{}) {
			t.Fatalf("a result with an error: %+v %v", h, err)
		}
		// A prefix of a whole ClientHello is incomplete, never another
		// answer.
		if err == nil {
			for _, n := range []int{0, 1, 5, len(b) / 2} {
				if n >= len(b) {
					continue
				}
				if _, perr := ParseClientHello(b[:n]); perr != nil && !errors.Is(perr, ErrIncomplete) && !errors.Is(perr, ErrNotTLS) {
					t.Fatalf("prefix %d: %v", n, perr)
				}
			}
		}
	})
}

func FuzzRequestHost(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		host, err := ParseRequestHost(b)
		if err != nil && host != "" {
			t.Fatalf("a host with an error: %q %v", host, err)
		}
	})
}
