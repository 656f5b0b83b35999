package feeds

import (
	"bytes"
	"crypto/sha1"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/fqdngate/fqdngate/internal/policy"
)

// sortAddrs sorts addrs and drops repeats: the same address told to two
// devices, or for two names, is one line.
func sortAddrs(addrs []netip.Addr) []netip.Addr {
	slices.SortFunc(addrs, netip.Addr.Compare)
	return slices.Compact(addrs)
}

// ipList renders sorted addresses as a PAN-OS EDL IP list ("Formatting
// Guidelines for an External Dynamic List", IP Address List: one entry a
// line, `IP [space] comment`), which a FortiGate IP address threat feed
// reads as well. Each address is its own line, never merged into a
// prefix or range: a range would open addresses nobody was told.
func ipList(addrs []netip.Addr) []byte {
	var b bytes.Buffer
	b.Grow(len(addrs) * 16)
	buf := make([]byte, 0, 64)
	for _, a := range addrs {
		buf = a.AppendTo(buf[:0])
		b.Write(buf)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// DomainLine is how one policy pattern appears in the EDL domain list.
type DomainLine struct {
	Pattern string
	// Line is the list entry; empty when the pattern is left out.
	Line string
	// Widened: the entry matches more names than the pattern.
	Widened bool
}

// domainLine translates a pattern into PAN-OS EDL domain list syntax
// ("Formatting Guidelines for an External Dynamic List", Domain List): a
// caret marks an exact match (^name), and "*" may only be a whole token,
// prepended, matching one or more labels (*.zone). A wildcard inside a
// label (azgn*.servicebus.windows.net) has no equivalent: with widen it
// becomes *.zone (every name below the zone, at any depth), otherwise it
// is left out.
func domainLine(p policy.Pattern, widen bool) DomainLine {
	switch p.Kind {
	case policy.Exact:
		return DomainLine{Pattern: p.Text, Line: "^" + p.Base}
	case policy.Below:
		return DomainLine{Pattern: p.Text, Line: "*." + p.Base}
	}
	if !widen {
		return DomainLine{Pattern: p.Text}
	}
	return DomainLine{Pattern: p.Text, Line: "*." + p.Base, Widened: true}
}

// domainList renders a group's rules as an EDL domain list, each entry
// once, sorted. A widened entry says so in a comment after a space, the
// form the EDL formats give comments; an entry both widened and exact
// elsewhere is written unwidened. It returns the patterns left out.
func domainList(rules []*policy.Rule, widen bool) (body []byte, leftOut []string) {
	lines := map[string]string{} // entry → comment
	for _, r := range rules {
		for _, p := range r.Patterns {
			d := domainLine(p, widen)
			switch {
			case d.Line == "":
				leftOut = append(leftOut, d.Pattern)
			case d.Widened:
				if c, seen := lines[d.Line]; !seen || c != "" {
					lines[d.Line] = joinComment(c, d.Pattern)
				}
			default:
				lines[d.Line] = ""
			}
		}
	}
	keys := make([]string, 0, len(lines))
	for k := range lines {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b bytes.Buffer
	for _, k := range keys {
		b.WriteString(k)
		if c := lines[k]; c != "" {
			b.WriteString(" widened-from:")
			b.WriteString(c)
		}
		b.WriteByte('\n')
	}
	slices.Sort(leftOut)
	return b.Bytes(), slices.Compact(leftOut)
}

// joinComment adds a widened pattern to an entry's comment, each once,
// in order.
func joinComment(c, pattern string) string {
	if c == "" {
		return pattern
	}
	parts := strings.Split(c, ",")
	if !slices.Contains(parts, pattern) {
		parts = append(parts, pattern)
		slices.Sort(parts)
	}
	return strings.Join(parts, ",")
}

// gdcFile is Check Point's Generic Data Center JSON (sk167210, R81+):
// {"version": "1.0", "description", "objects": [{"name", "id",
// "description", "ranges": [IP, CIDR or first-last]}]}.
type gdcFile struct {
	Version     string      `json:"version"`
	Description string      `json:"description"`
	Objects     []gdcObject `json:"objects"`
}

type gdcObject struct {
	Name        string   `json:"name"`
	ID          string   `json:"id"`
	Description string   `json:"description"`
	Ranges      []string `json:"ranges"`
}

// ruleAddrs is one rule's live addresses, sorted.
type ruleAddrs struct {
	Rule  string
	Addrs []netip.Addr
}

// checkpointJSON renders a group's rules, in the policy's order, as a
// Generic Data Center file: one object per rule, even an empty one, so
// that an object a security rule uses never vanishes.
func checkpointJSON(group string, rules []ruleAddrs) []byte {
	f := gdcFile{Version: "1.0", Description: "fqdngate: addresses answered to client group " + group + ", live now",
		Objects: make([]gdcObject, 0, len(rules))}
	for _, r := range rules {
		o := gdcObject{Name: "fqdngate-" + group + "-" + r.Rule, ID: objectID(group, r.Rule),
			Description: "addresses fqdngate answered to " + group + " for rule " + r.Rule,
			Ranges:      make([]string, len(r.Addrs))}
		for i, a := range r.Addrs {
			o.Ranges[i] = a.String()
		}
		f.Objects = append(f.Objects, o)
	}
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("feeds: marshal checkpoint file: %v", err)) // strings and slices only: cannot fail
	}
	return append(out, '\n')
}

// objectID is a name-based UUID (RFC 9562 version 5 layout over SHA-1) of
// the group and rule: the same object keeps its id across restarts and
// nodes, which is what Check Point keys a data center object on.
func objectID(group, rule string) string {
	h := sha1.Sum([]byte("fqdngate\x00" + group + "\x00" + rule))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}
