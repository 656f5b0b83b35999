package servicetags

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseASN(t *testing.T) {
	in := `# origin table export
192.0.2.0/24 64500 EXAMPLE-CDN Global Edge
198.51.100.0/25   AS64500
2001:db8::/32 as64501 DOC-NET

203.0.113.7/24 64502
`
	tab, err := ParseASN("asn.txt", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr   string
		asn    uint32
		name   string
		prefix string
	}{
		{"192.0.2.9", 64500, "EXAMPLE-CDN Global Edge", "192.0.2.0/24"},
		{"198.51.100.1", 64500, "EXAMPLE-CDN Global Edge", "198.51.100.0/25"},
		{"198.51.100.200", 0, "", ""},
		{"2001:db8:5::1", 64501, "DOC-NET", "2001:db8::/32"},
		{"203.0.113.200", 64502, "", "203.0.113.0/24"}, // masked
	}
	for _, tt := range tests {
		as, pfx := tab.Origin(netip.MustParseAddr(tt.addr))
		if tt.asn == 0 {
			if as != nil {
				t.Errorf("%s: origin AS%d, want none", tt.addr, as.Number)
			}
			continue
		}
		if as == nil || as.Number != tt.asn || as.Name != tt.name || pfx.String() != tt.prefix {
			t.Errorf("%s: %+v %v, want AS%d %q %s", tt.addr, as, pfx, tt.asn, tt.name, tt.prefix)
		}
	}
	if got := tab.ASes()[0].Addresses(); got != 256+128 {
		t.Errorf("AS64500 opens %d addresses, want 384", got)
	}
}

func TestParseASNErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.0.2.0/24 64500\n198.51.100.0/24\n", `asn.txt:2: "198.51.100.0/24": want PREFIX ASN [NAME]`},
		{"# c\n\n192.0.2.0/33 64500\n", `asn.txt:3: "192.0.2.0/33" is not a prefix`},
		{"192.0.2.0/24 AS-EXAMPLE\n", `asn.txt:1: "AS-EXAMPLE" is not an AS number`},
		{"192.0.2.0/24 4294967296\n", `asn.txt:1: "4294967296" is not an AS number`},
		{"192.0.2.0/24 1 " + strings.Repeat("x", maxASNLine) + "\n", `asn.txt:1: line longer than 4096 bytes`},
	}
	for _, tt := range tests {
		_, err := ParseASN("asn.txt", strings.NewReader(tt.in))
		if err == nil || !errors.Is(err, ErrFormat) || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("ParseASN(%.40q) = %v, want %s", tt.in, err, tt.want)
		}
	}
}

// FuzzParseASN: any input parses, and every line's prefix is then found
// again, or fails with ErrFormat.
func FuzzParseASN(f *testing.F) {
	f.Add("192.0.2.0/24 64500 EXAMPLE-CDN\n2001:db8::/32 AS64501\n")
	f.Add("# x\n\n198.51.100.0/24\n")
	f.Add("192.0.2.1/33 1\n")
	f.Fuzz(func(t *testing.T, in string) {
		tab, err := ParseASN("fuzz.txt", strings.NewReader(in))
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("%v does not wrap ErrFormat", err)
			}
			return
		}
		for _, as := range tab.ASes() {
			for _, p := range as.Prefixes {
				if got, _ := tab.Origin(p.Addr()); got == nil {
					t.Fatalf("%v of AS%d not found", p, as.Number)
				}
			}
		}
	})
}
