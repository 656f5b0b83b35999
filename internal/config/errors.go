package config

import (
	"errors"
	"fmt"
	"strings"
)

// FieldError is one problem in a configuration file, with its position.
type FieldError struct {
	File   string
	Line   int // 0 when the field is absent from the file
	Column int
	Field  string // e.g. clients[0].rules[1].ports[0]
	Msg    string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
	}
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file, in file order.
type Errors []*FieldError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// ErrInvalid is wrapped by every validation failure, so callers can tell
// a bad configuration (exit code 2) from an unreadable file.
var ErrInvalid = errors.New("invalid configuration")

// Is makes errors.Is(err, ErrInvalid) true for Errors.
func (es Errors) Is(target error) bool { return target == ErrInvalid }
