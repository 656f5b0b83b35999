package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// path addresses a node: string elements are mapping keys, ints are
// sequence indexes.
type path []any

func (p path) String() string {
	var b strings.Builder
	for _, e := range p {
		switch v := e.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(v)
		case int:
			b.WriteString("[" + strconv.Itoa(v) + "]")
		}
	}
	return b.String()
}

func (p path) with(e ...any) path {
	out := make(path, 0, len(p)+len(e))
	return append(append(out, p...), e...)
}

// positions finds where a path is in the parsed document.
type positions struct {
	root *yaml.Node
}

// lookup returns the node at p, or the deepest node on the way and false.
// Aliases are followed on the way down; a node found through one is where
// the alias is used.
func (ps positions) lookup(p path) (*yaml.Node, bool) {
	n := ps.root
	if n == nil {
		return nil, false
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, e := range p {
		in := n
		for in.Kind == yaml.AliasNode && in.Alias != nil {
			in = in.Alias
		}
		var next *yaml.Node
		switch v := e.(type) {
		case string:
			if in.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(in.Content); i += 2 {
					if in.Content[i].Value == v {
						next = in.Content[i+1]
						break
					}
				}
			}
		case int:
			if in.Kind == yaml.SequenceNode && v < len(in.Content) {
				next = in.Content[v]
			}
		}
		if next == nil {
			return n, false
		}
		n = next
	}
	return n, true
}

func (ps positions) present(p path) bool {
	_, ok := ps.lookup(p)
	return ok
}

// collector gathers field errors and warnings with their positions.
type collector struct {
	file string
	pos  positions
	errs Errors
	// warns are the dangerous but valid settings (warnings.go).
	warns Errors
	// bad are paths the decoder already reported; a validation error at
	// or below one would repeat it.
	bad []path
}

func (c *collector) add(p path, format string, args ...any) {
	if c.explained(p) {
		return
	}
	c.errs = append(c.errs, c.at(p, fmt.Sprintf(format, args...)))
}

// addAt is add for a problem of field p that is caused at another place,
// where it is shown: e.g. a missing api.token_file at listen.api.
func (c *collector) addAt(at, p path, format string, args ...any) {
	if c.explained(p) {
		return
	}
	e := c.at(at, fmt.Sprintf(format, args...))
	e.Field = p.String()
	c.errs = append(c.errs, e)
}

// warn records a warning: valid, but probably not what was meant.
func (c *collector) warn(p path, format string, args ...any) {
	if c.explained(p) {
		return
	}
	e := c.at(p, fmt.Sprintf(format, args...))
	e.Warning = true
	c.warns = append(c.warns, e)
}

func (c *collector) at(p path, msg string) *FieldError {
	e := &FieldError{File: c.file, Field: p.String(), Msg: msg, Line: 1, Column: 1}
	if n, _ := c.pos.lookup(p); n != nil && n.Line > 0 {
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

func (c *collector) explained(p path) bool {
	for _, b := range c.bad {
		if len(b) <= len(p) && slices.Equal(b, p[:len(b)]) {
			return true
		}
	}
	return false
}
