package policy

import (
	"testing"
)

// FuzzParsePattern checks that parsing never panics, that a parsed pattern
// parses again to itself, and that the trie agrees with the reference
// matcher on a name derived from the input.
func FuzzParsePattern(f *testing.F) {
	for _, s := range []string{
		"prod.core.sphere.azure.net", "*.servicebus.windows.net", "azgn*.servicebus.windows.net",
		"*", "*.com", "a..b", "bücher.example", "xn--bcher-kva.example", "-a.b.c", "*x*.a.b",
	} {
		f.Add(s, "azgnx.servicebus.windows.net")
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		p, err := ParsePattern(pattern)
		if err != nil {
			return
		}
		again, err := ParsePattern(p.Text)
		if err != nil || again != p {
			t.Fatalf("re-parse of %q: %+v, %v; want %+v", p.Text, again, err, p)
		}
		g := &Group{Name: "g", Rules: []*Rule{{Name: "r", Patterns: []Pattern{p}}}}
		if _, err := New([]*Group{g}); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{name, p.Base, "x." + p.Base, "x.y." + p.Base, p.Prefix + "x" + p.Suffix + "." + p.Base} {
			norm, ok := NormalizeName(n)
			want := ok && p.Matches(norm)
			got := len(g.Match(n)) > 0
			if got != want {
				t.Fatalf("pattern %q name %q: trie %v, reference %v", p.Text, n, got, want)
			}
		}
	})
}

func FuzzParsePort(f *testing.F) {
	for _, s := range []string{"tcp/443", "udp/123", "tcp/8000-8100", "tcp/0", "x", "tcp/1-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePort(s)
		if err != nil {
			return
		}
		again, err := ParsePort(p.String())
		if err != nil || again != p {
			t.Fatalf("round trip of %q: %v, %v", s, again, err)
		}
		if p.Lo == 0 || p.Hi < p.Lo {
			t.Fatalf("invalid range accepted: %+v", p)
		}
	})
}
