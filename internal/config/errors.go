package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// FieldError is one problem in a configuration file, with its position.
type FieldError struct {
	File   string
	Line   int // 0 when the field is absent from the file
	Column int
	Field  string // e.g. clients[0].rules[1].ports[0]
	Msg    string
	// Warning marks a setting that is valid but dangerous (warnings.go);
	// Strict marks a warning that WithStrict made an error.
	Warning, Strict bool
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
	switch {
	case e.Strict:
		b.WriteString("warning (strict): ")
	case e.Warning:
		b.WriteString("warning: ")
	}
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

// ErrStrict is wrapped, besides ErrInvalid, when WithStrict made a
// warning an error.
var ErrStrict = errors.New("warnings are errors in strict mode")

// Is makes errors.Is(err, ErrInvalid) true for Errors, and
// errors.Is(err, ErrStrict) when one of them is a warning made an error.
func (es Errors) Is(target error) bool {
	switch target {
	case ErrInvalid:
		return true
	case ErrStrict:
		return slices.ContainsFunc(es, func(e *FieldError) bool { return e.Strict })
	}
	return false
}

// sortByPosition puts errors in file order; those at one place keep the
// order they were found in.
func (es Errors) sortByPosition() {
	slices.SortStableFunc(es, func(a, b *FieldError) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Column - b.Column
	})
}
