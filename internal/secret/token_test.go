package secret

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadToken(t *testing.T) {
	const tok = "s3cret-token-0123456789"
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		want    string // the token, or a part of the error
		ok      bool
	}{
		{"owner only", tok + "\n", 0o600, tok, true},
		{"group may read", tok, 0o640, tok, true},
		{"CRLF", tok + "\r\n", 0o400, tok, true},
		{"world-readable", tok, 0o644, "mode 0644", false},
		{"others may write", tok, 0o602, "mode 0602", false},
		{"group may write", tok, 0o660, "mode 0660", false},
		{"too short", "short", 0o600, "5 bytes", false},
		{"two lines", tok + "\nmore-of-it", 0o600, "one line", false},
		{"space", "s3cret token 0123456789", 0o600, "one line", false},
		{"empty", "", 0o600, "0 bytes", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			got, err := ReadToken(p)
			if tc.ok {
				if err != nil || string(got) != tc.want {
					t.Fatalf("ReadToken = %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("ReadToken = %q, %v; want an error naming the file with %q", got, err, tc.want)
			}
		})
	}
	if _, err := ReadToken(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	if _, err := ReadToken(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
