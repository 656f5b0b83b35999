package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"

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

// yamlLine finds "line N" in yaml.v3's messages.
var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

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
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlErrors(name, err)
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlErrors(name, err)
	}
	col := &collector{file: name, pos: positions{root: &root}}
	c.applyDefaults(col.pos)
	c.validate(col, o)
	if len(col.errs) > 0 {
		return nil, col.errs
	}
	return &c, nil
}

// yamlErrors turns yaml.v3's errors into FieldErrors with lines.
func yamlErrors(file string, err error) error {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	var out Errors
	for _, m := range msgs {
		fe := &FieldError{File: file, Msg: m}
		if sm := yamlLine.FindStringSubmatch(m); sm != nil {
			fe.Line, _ = strconv.Atoi(sm[1])
			fe.Column = 1
			fe.Msg = sm[2]
		}
		out = append(out, fe)
	}
	return out
}
