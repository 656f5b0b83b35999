package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, path, want, err string
	}{
		{"first line, trimmed", write("a", "  s3cret \nsecond line\n"), "s3cret", ""},
		{"no newline", write("b", "k"), "k", ""},
		{"empty", write("c", "\n\n"), "", "empty"},
		{"too long", write("d", strings.Repeat("x", maxSecretFile+1)), "", "longer than"},
		{"missing", filepath.Join(dir, "nope"), "", "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readSecret(tc.path)
			if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("got %q, %v; want %q, error containing %q", got, err, tc.want, tc.err)
			}
		})
	}
}
