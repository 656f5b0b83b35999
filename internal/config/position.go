package config

import (
	"fmt"
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
func (ps positions) lookup(p path) (*yaml.Node, bool) {
	n := ps.root
	if n == nil {
		return nil, false
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, e := range p {
		var next *yaml.Node
		switch v := e.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == v {
						next = n.Content[i+1]
						break
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && v < len(n.Content) {
				next = n.Content[v]
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

// collector gathers field errors with their positions.
type collector struct {
	file string
	pos  positions
	errs Errors
}

func (c *collector) add(p path, format string, args ...any) {
	e := &FieldError{File: c.file, Field: p.String(), Msg: fmt.Sprintf(format, args...)}
	if n, _ := c.pos.lookup(p); n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	c.errs = append(c.errs, e)
}
