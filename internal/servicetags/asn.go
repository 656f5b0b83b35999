package servicetags

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/gaissmai/bart"
)

// maxASNLine bounds one line of an ASN prefix file (a BGP table export's
// line is well under 200 bytes; an AS name rarely over 100).
const maxASNLine = 4096

// AS is one origin autonomous system of an ASN prefix file.
type AS struct {
	Number uint32
	// Name is the file's name for it ("" when the lines gave none).
	Name     string
	Prefixes []netip.Prefix
}

// Addresses is how many addresses allowing the whole AS would open.
func (a *AS) Addresses() uint64 { return CountAddresses(a.Prefixes) }

// ASNTable maps prefixes to their origin AS, by longest-prefix match.
type ASNTable struct {
	ases  []*AS
	byNum map[uint32]*AS
	table bart.Table[*AS]
}

// LoadASN reads an ASN prefix file: one "PREFIX ASN [NAME]" a line, as
// exported from a routing registry or a BGP table ("192.0.2.0/24 64500
// EXAMPLE-NET"; the ASN may be written AS64500); blank lines and lines
// starting with # are skipped.
func LoadASN(path string) (*ASNTable, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("asn prefixes: %w", err)
	}
	defer f.Close()
	return ParseASN(path, f)
}

// ParseASN parses an ASN prefix file from r; name is used in errors,
// which name the line ("asn.txt:7: ...").
func ParseASN(name string, r io.Reader) (*ASNTable, error) {
	t := &ASNTable{byNum: map[uint32]*AS{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxASNLine)
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 || text[0] == '#' {
			continue
		}
		fields := strings.Fields(string(text))
		if len(fields) < 2 {
			return nil, fmt.Errorf("%s:%d: %q: want PREFIX ASN [NAME]: %w", name, line, clipString(string(text)), ErrFormat)
		}
		pfx, err := netip.ParsePrefix(fields[0])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %q is not a prefix: %w", name, line, clipString(fields[0]), ErrFormat)
		}
		num, err := parseASN(fields[1])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %q is not an AS number: %w", name, line, clipString(fields[1]), ErrFormat)
		}
		as := t.byNum[num]
		if as == nil {
			as = &AS{Number: num}
			t.byNum[num] = as
			t.ases = append(t.ases, as)
		}
		if as.Name == "" && len(fields) > 2 {
			as.Name = strings.Join(fields[2:], " ")
		}
		pfx = pfx.Masked()
		as.Prefixes = append(as.Prefixes, pfx)
		// A prefix announced by two origins (MOAS) keeps its first.
		if _, ok := t.table.Get(pfx); !ok {
			t.table.Insert(pfx, as)
		}
	}
	if err := sc.Err(); err != nil {
		if err == bufio.ErrTooLong {
			return nil, fmt.Errorf("%s:%d: line longer than %d bytes: %w", name, line+1, maxASNLine, ErrFormat)
		}
		return nil, fmt.Errorf("asn prefixes: read %s: %w", name, err)
	}
	return t, nil
}

func parseASN(s string) (uint32, error) {
	if len(s) > 2 && strings.EqualFold(s[:2], "AS") {
		s = s[2:]
	}
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err
}

func clipString(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// Origin returns the AS announcing the most specific prefix that contains
// addr, with that prefix; nil when no line covers it.
func (t *ASNTable) Origin(addr netip.Addr) (*AS, netip.Prefix) {
	if t == nil {
		return nil, netip.Prefix{}
	}
	addr = addr.Unmap()
	if !addr.IsValid() {
		return nil, netip.Prefix{}
	}
	pfx, as, ok := t.table.LookupPrefixLPM(netip.PrefixFrom(addr, addr.BitLen()))
	if !ok {
		return nil, netip.Prefix{}
	}
	return as, pfx
}

// ASes returns the file's systems in the order they first appeared.
func (t *ASNTable) ASes() []*AS { return t.ases }
