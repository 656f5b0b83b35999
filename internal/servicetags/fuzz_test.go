package servicetags

import (
	"errors"
	"net/netip"
	"os"
	"testing"
)

// FuzzParse: any input either parses into tags whose prefixes are all
// valid and masked, and that the index then finds again, or fails with
// ErrFormat; it never panics.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"ServiceTags_Public_test.json", "discovery_api.json", "broken_prefix.json", "truncated.json"} {
		data, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz.json", data)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		x := NewIndex(file)
		for _, tag := range file.Tags {
			for _, p := range tag.Prefixes {
				if !p.IsValid() || p != p.Masked() {
					t.Fatalf("prefix %v kept unmasked or invalid", p)
				}
				if _, ok := x.Lookup(p.Addr()); !ok {
					t.Fatalf("%v of %q not found in the index", p, tag.Name)
				}
			}
		}
		x.Lookup(netip.MustParseAddr("192.0.2.1"))
	})
}
