package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadSecret: feed tokens and API keys are read with the checks of
// every secret (internal/secret has the whole table).
func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, path, want, err string
	}{
		{"one line", write("a", "pan-key-0123456789\n", 0o600), "pan-key-0123456789", ""},
		{"world-readable", write("b", "pan-key-0123456789", 0o644), "", "mode 0644"},
		{"two lines", write("c", "pan-key-0123456789\nsecond line\n", 0o600), "", "one line"},
		{"too short", write("d", "k", 0o600), "", "1 bytes"},
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
