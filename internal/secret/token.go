package secret

import (
	"bytes"
	"fmt"
	"os"
)

// Token file bounds: long enough not to be guessed, short enough to be a
// token and not some other file given by mistake.
const (
	MinTokenLen = 16
	MaxTokenLen = 4096
)

// ReadToken reads a token file. It must be a regular file that others
// cannot read or write and the group cannot write, holding one line of
// printable ASCII without spaces, of MinTokenLen to MaxTokenLen bytes.
// Errors name the file; callers prefix the setting it came from.
func ReadToken(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o027 != 0 {
		return nil, fmt.Errorf("%s has mode %04o: others must not read or write it nor the group write it (chmod 0600 or 0640)", path, perm)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) < MinTokenLen || len(b) > MaxTokenLen {
		return nil, fmt.Errorf("%s: the token is %d bytes, want %d to %d", path, len(b), MinTokenLen, MaxTokenLen)
	}
	for _, c := range b {
		if c <= ' ' || c > '~' {
			return nil, fmt.Errorf("%s: the token must be one line of printable ASCII without spaces", path)
		}
	}
	return b, nil
}
