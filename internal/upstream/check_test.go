package upstream

import (
	"strings"
	"testing"
)

func TestRandomCase(t *testing.T) {
	for _, name := range []string{"www.example.com.", "xn--bcher-kva.example.", "a1-b2.example.", ".", `a\.b.example.`} {
		differs := false
		for range 32 {
			got := randomCase(name)
			if !strings.EqualFold(got, name) || len(got) != len(name) {
				t.Fatalf("%q: %q is not the same name", name, got)
			}
			for i := range len(name) {
				if c := name[i] | 0x20; (c < 'a' || c > 'z') && got[i] != name[i] {
					t.Fatalf("%q: %q changed a byte that is not a letter", name, got)
				}
			}
			differs = differs || got != name
		}
		if hasLetter := strings.ContainsAny(name, "abcdefghijklmnopqrstuvwxyz"); differs != hasLetter {
			t.Errorf("%q: case changed %v in 32 tries, want %v", name, differs, hasLetter)
		}
	}
}
