package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePatternErrors(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string
	}{
		{"", "empty"},
		{"   ", "empty"},
		{"*", "too broad"},
		{"*.", "too broad"},
		{"*.net", "too broad"},
		{"a*.net", "too broad"},
		{"a.*.example.com", "only allowed in the first label"},
		{"**.example.com", "at most one *"},
		{"a*b*.example.com", "at most one *"},
		{"a..example.com", "empty label"},
		{".example.com", "empty label"},
		{"exa mple.com", "character ' '"},
		{"ex!ample.com", "character '!'"},
		{"-bad.example.com", "starts or ends with '-'"},
		{"bad-.example.com", "starts or ends with '-'"},
		{strings.Repeat("a", 64) + ".example.com", "longer than 63"},
		{strings.Repeat("abcdefghi.", 26) + "com", "longer than 253"},
		{"bücher*.example.com", "must be ASCII"},
		{"<region>.example.com", "character '<'"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			_, err := ParsePattern(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParsePattern(%q) error = %v, want one containing %q", tc.in, err, tc.wantErr)
			}
		})
	}
	if _, err := ParsePattern("*.com"); !errors.Is(err, ErrTooBroad) {
		t.Errorf("*.com: error %v is not ErrTooBroad", err)
	}
}

func TestParsePatternNormalises(t *testing.T) {
	tests := []struct {
		in, text, base string
		kind           PatternKind
	}{
		{"Prod.Core.Sphere.Azure.NET.", "prod.core.sphere.azure.net", "prod.core.sphere.azure.net", Exact},
		{" *.ServiceBus.windows.net ", "*.servicebus.windows.net", "servicebus.windows.net", Below},
		{"azgn*.servicebus.windows.net", "azgn*.servicebus.windows.net", "servicebus.windows.net", InLabel},
		{"*-edge.example.com", "*-edge.example.com", "example.com", InLabel},
		{"bücher.example", "xn--bcher-kva.example", "xn--bcher-kva.example", Exact},
		{"xn--bcher-kva.example", "xn--bcher-kva.example", "xn--bcher-kva.example", Exact},
		{"_mqtt._tcp.example.com", "_mqtt._tcp.example.com", "_mqtt._tcp.example.com", Exact},
		{"localhost", "localhost", "localhost", Exact},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			p, err := ParsePattern(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if p.Text != tc.text || p.Base != tc.base || p.Kind != tc.kind {
				t.Fatalf("got text %q base %q kind %d, want %q %q %d", p.Text, p.Base, p.Kind, tc.text, tc.base, tc.kind)
			}
		})
	}
}

// The rows of DESIGN section 3, plus the edges around them.
func TestPatternSemantics(t *testing.T) {
	tests := []struct {
		pattern string
		match   []string
		noMatch []string
	}{
		{
			pattern: "prod.core.sphere.azure.net",
			match:   []string{"prod.core.sphere.azure.net", "PROD.core.Sphere.azure.net.", "prod.core.sphere.azure.net."},
			noMatch: []string{"x.prod.core.sphere.azure.net", "core.sphere.azure.net", "prod.core.sphere.azure.ne", "prodxcore.sphere.azure.net"},
		},
		{
			pattern: "*.servicebus.windows.net",
			match:   []string{"a.servicebus.windows.net", "a.b.c.servicebus.windows.net", "AZGN1.ServiceBus.Windows.Net."},
			noMatch: []string{"servicebus.windows.net", "xservicebus.windows.net", "a.servicebus.windows.net.evil.com", "windows.net"},
		},
		{
			pattern: "azgn*.servicebus.windows.net",
			match:   []string{"azgnxyz.servicebus.windows.net", "azgn.servicebus.windows.net", "AZGN-12.servicebus.windows.net"},
			noMatch: []string{"a.azgnx.servicebus.windows.net", "xazgn.servicebus.windows.net", "servicebus.windows.net", "azgnx.b.servicebus.windows.net"},
		},
		{
			pattern: "*-edge.example.com",
			match:   []string{"cdn-edge.example.com", "-edge.example.com"},
			noMatch: []string{"edge.example.com", "a.cdn-edge.example.com", "cdn-edgex.example.com"},
		},
		{
			pattern: "bücher.example",
			match:   []string{"xn--bcher-kva.example", "XN--BCHER-KVA.example."},
			noMatch: []string{"bucher.example"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.pattern, func(t *testing.T) {
			p, err := ParsePattern(tc.pattern)
			if err != nil {
				t.Fatal(err)
			}
			g := &Group{Name: "g", Rules: []*Rule{{Name: "r", Patterns: []Pattern{p}}}}
			if _, err := New([]*Group{g}); err != nil {
				t.Fatal(err)
			}
			for _, name := range tc.match {
				n, ok := NormalizeName(name)
				if !ok || !p.Matches(n) {
					t.Errorf("reference: %q does not match %q", tc.pattern, name)
				}
				if len(g.Match(name)) != 1 {
					t.Errorf("trie: %q does not match %q", tc.pattern, name)
				}
			}
			for _, name := range tc.noMatch {
				if n, ok := NormalizeName(name); ok && p.Matches(n) {
					t.Errorf("reference: %q matches %q", tc.pattern, name)
				}
				if len(g.Match(name)) != 0 {
					t.Errorf("trie: %q matches %q", tc.pattern, name)
				}
			}
		})
	}
}

func TestNormalizeNameRejectsNonHostNames(t *testing.T) {
	for _, name := range []string{
		"", ".", "a..b", `a\.b.example.com`, `\000.example.com`, "a b.example.com",
		strings.Repeat("a", 64) + ".example.com", strings.Repeat("a.", 127) + "com",
	} {
		if n, ok := NormalizeName(name); ok {
			t.Errorf("NormalizeName(%q) = %q, want rejected", name, n)
		}
	}
}
