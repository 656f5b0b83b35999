package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fqdngate/fqdngate/internal/didyoumean"
)

// decoder fills the Config from yaml.v3's node tree itself instead of
// yaml.Decoder.Decode: that stops at the first value of a wrong type,
// names Go types ("into time.Duration") and gives unknown keys no column.
// Walking the nodes, every problem gets the node's line and column and the
// field path, the value is left at its zero and the walk goes on, so that
// validation reports the rest of the file too. Scalars are converted by
// yaml.v3 (Node.Decode), so what a value means is what yaml.v3 says.
type decoder struct {
	file string
	errs Errors
	// bad are the paths whose values could not be decoded (or whose key
	// was misspelt): validation errors at or below them would only
	// repeat the problem, so the collector drops them.
	bad []path
	// budget bounds the nodes visited, aliases expanded: a file of
	// aliases of aliases would otherwise expand exponentially.
	budget int
}

// aliasFactor bounds alias expansion: the nodes visited may be this many
// times the nodes in the file (plus a little for tiny files).
const aliasFactor = 10

func newDecoder(file string, root *yaml.Node) *decoder {
	return &decoder{file: file, budget: aliasFactor*countNodes(root) + 1000}
}

func countNodes(n *yaml.Node) int {
	if n == nil {
		return 0
	}
	total := 1
	for _, c := range n.Content {
		total += countNodes(c)
	}
	return total
}

var durationType = reflect.TypeFor[time.Duration]()

func (d *decoder) fail(n *yaml.Node, p path, format string, args ...any) {
	e := &FieldError{File: d.file, Field: p.String(), Msg: fmt.Sprintf(format, args...), Line: 1, Column: 1}
	if n != nil && n.Line > 0 {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
	d.bad = append(d.bad, p)
}

// value decodes n into v (settable), at path p.
func (d *decoder) value(n *yaml.Node, v reflect.Value, p path) {
	at := n // errors point at the alias, where the value is used
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if d.budget--; d.budget < 0 {
		if d.budget == -1 {
			d.fail(at, p, "the file expands to too many values (aliases of aliases?)")
		}
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // as yaml.v3 does: null leaves the zero value (the default)
	}
	t := v.Type()
	switch {
	case t.Kind() == reflect.Pointer:
		nv := reflect.New(t.Elem())
		d.value(at, nv.Elem(), p)
		v.Set(nv)
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.fail(at, p, "expected %s, got %s", want(t), got(n))
			return
		}
		d.structure(n, v, p)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			msg := fmt.Sprintf("expected %s, got %s", want(t), got(n))
			if n.Kind == yaml.ScalarNode && isScalarKind(t.Elem()) {
				msg += fmt.Sprintf(" (a list of one is [%s])", n.Value)
			}
			d.fail(at, p, "%s", msg)
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.value(c, s.Index(i), p.with(i))
		}
		v.Set(s)
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.fail(at, p, "expected %s, got %s", want(t), got(n))
			return
		}
		m := reflect.MakeMapWithSize(t, len(n.Content)/2)
		seen := map[string]*yaml.Node{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if !d.key(k, p, seen) {
				continue
			}
			ev := reflect.New(t.Elem()).Elem()
			d.value(val, ev, p.with(k.Value))
			m.SetMapIndex(reflect.ValueOf(k.Value).Convert(t.Key()), ev)
		}
		v.Set(m)
	default:
		if n.Kind != yaml.ScalarNode {
			d.fail(at, p, "expected %s, got %s", want(t), got(n))
			return
		}
		nv := reflect.New(t)
		if err := n.Decode(nv.Interface()); err != nil {
			d.fail(at, p, "expected %s, got %s", want(t), got(n))
			return
		}
		v.Set(nv.Elem())
	}
}

// key checks a mapping key: a name, not given twice.
func (d *decoder) key(k *yaml.Node, p path, seen map[string]*yaml.Node) bool {
	if k.Kind != yaml.ScalarNode {
		d.fail(k, p, "a key must be a name, not %s", got(k))
		return false
	}
	if prev, dup := seen[k.Value]; dup {
		d.fail(k, p.with(k.Value), "given twice: already set at line %d", prev.Line)
		return false
	}
	seen[k.Value] = k
	return true
}

// structure decodes a mapping into a struct by the fields' yaml tags.
func (d *decoder) structure(n *yaml.Node, v reflect.Value, p path) {
	fields := fieldsOf(v.Type())
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.ShortTag() == "!!merge" {
			d.merge(val, v, p)
			continue
		}
		if !d.key(k, p, seen) {
			continue
		}
		idx, ok := fields.index[k.Value]
		if !ok {
			d.unknownKey(n, k, p, fields.names)
			continue
		}
		if fields.oneOrList[idx] {
			val = listOfOne(val)
		}
		d.value(val, v.Field(idx), p.with(k.Value))
	}
}

// listOfOne makes a non-null scalar a list of it, for the fields tagged
// config:"one-or-list" (cluster.nats: embedded).
func listOfOne(n *yaml.Node) *yaml.Node {
	r := n
	for r.Kind == yaml.AliasNode && r.Alias != nil {
		r = r.Alias
	}
	if r.Kind != yaml.ScalarNode || r.ShortTag() == "!!null" {
		return n
	}
	return &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: []*yaml.Node{r}, Line: n.Line, Column: n.Column}
}

// merge applies a "<<: *anchor" merge key, as yaml.v3 does for structs.
func (d *decoder) merge(n *yaml.Node, v reflect.Value, p path) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		d.structure(n, v, p)
	case yaml.SequenceNode:
		for _, c := range n.Content {
			d.merge(c, v, p)
		}
	default:
		d.fail(n, p, "a merge (<<) takes a mapping or a list of mappings, not %s", got(n))
	}
}

func (d *decoder) unknownKey(m, k *yaml.Node, p path, known []string) {
	near := didyoumean.Nearest(k.Value, known)
	where := "the top level"
	if len(p) > 0 {
		where = p.String()
	}
	msg := "unknown key; " + didyoumean.Phrase(near, nil)
	if len(near) == 0 {
		msg = fmt.Sprintf("unknown key; %s takes %s", where, strings.Join(known, ", "))
	}
	d.fail(k, p.with(k.Value), "%s", msg)
	// The field it was meant for is probably absent now: a "required"
	// error there would say the same thing again.
	if len(near) == 1 && !hasKey(m, near[0]) {
		d.bad = append(d.bad, p.with(near[0]))
	}
}

func hasKey(m *yaml.Node, key string) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return true
		}
	}
	return false
}

type structFields struct {
	index map[string]int
	names []string // in declaration order, for suggestions
	// oneOrList are the fields where a scalar is a list of one.
	oneOrList map[int]bool
}

var fieldCache sync.Map // reflect.Type → structFields

func fieldsOf(t reflect.Type) structFields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(structFields)
	}
	f := structFields{index: map[string]int{}}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !t.Field(i).IsExported() {
			continue
		}
		f.index[name] = i
		if t.Field(i).Tag.Get("config") == "one-or-list" {
			if f.oneOrList == nil {
				f.oneOrList = map[int]bool{}
			}
			f.oneOrList[i] = true
		}
		f.names = append(f.names, name)
	}
	fieldCache.Store(t, f)
	return f
}

func isScalarKind(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Struct, reflect.Slice, reflect.Map, reflect.Pointer:
		return false
	}
	return true
}

// want says in words what a field of type t takes.
func want(t reflect.Type) string {
	if t == durationType {
		return "a duration such as 5m, 30s or 1h30m"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "a whole number"
	case reflect.Uint16:
		return "a whole number from 0 to 65535"
	case reflect.Uint32:
		return "a whole number from 0 to 4294967295"
	case reflect.Uint64, reflect.Uint:
		return "a whole number, 0 or more"
	case reflect.Slice:
		return "a list"
	case reflect.Map:
		return "a mapping of names to values"
	case reflect.Pointer:
		return want(t.Elem())
	case reflect.Struct:
		names := fieldsOf(t).names
		if len(names) > 4 {
			names = append(names[:4:4], "…")
		}
		return "a mapping (keys such as " + strings.Join(names, ", ") + ")"
	}
	return t.String()
}

// got says in words what a node is.
func got(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!str" {
			return strconv.Quote(n.Value)
		}
		return n.Value
	}
	return "nothing"
}
