package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"

	"gopkg.in/yaml.v3"

	"github.com/fqdngate/fqdngate/internal/catalog"
)

// maxFileSize bounds what Load reads; a real configuration is a few KiB.
const maxFileSize = 4 << 20

// Load reads, defaults and validates the configuration file at name.
// Errors from a readable file wrap ErrInvalid.
func Load(name string, opts ...Option) (*Config, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", name, err)
	}
	if len(data) > maxFileSize {
		return nil, Errors{{File: name, Msg: fmt.Sprintf("larger than %d bytes", maxFileSize)}}
	}
	return Parse(name, data, opts...)
}

// Parse is Load for data already in memory; name is used in errors.
func Parse(name string, data []byte, opts ...Option) (*Config, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.profiles == nil {
		cat, err := catalog.Default()
		if err != nil {
			return nil, fmt.Errorf("built-in catalog: %w", err)
		}
		o.profiles = cat
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, Errors{syntaxError(name, data, err)}
	}
	var c Config
	d := newDecoder(name, &root)
	if doc := rootMapping(&root); doc != nil {
		d.value(doc, reflect.ValueOf(&c).Elem(), nil)
	}
	var more yaml.Node
	switch err := dec.Decode(&more); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.errs = append(d.errs, syntaxError(name, data, err))
	default:
		at := &more
		if len(more.Content) > 0 {
			at = more.Content[0]
		}
		d.fail(at, nil, "a second YAML document (after ---): one file holds one configuration")
	}
	col := &collector{file: name, pos: positions{root: &root}, bad: d.bad, errs: d.errs}
	c.applyDefaults(col.pos)
	c.validate(col, o)
	c.warn(col, o)
	return c.result(col, o)
}

// rootMapping is the document's top node; nil for an empty file.
func rootMapping(root *yaml.Node) *yaml.Node {
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		return root.Content[0]
	}
	return nil
}
