package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/fqdngate/fqdngate/internal/policy"
)

type file struct {
	Profiles []*Profile `yaml:"profiles"`
}

var (
	profileName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)
	seedFile    = regexp.MustCompile(`^\d{3}_[0-9a-f]+\.txt$`)
)

// Load reads every *.yaml in dir of fsys and validates the whole catalog.
// All problems are reported at once, each naming the file, profile and
// entry (by its seed line).
func Load(fsys fs.FS, dir string) (*Catalog, error) {
	names, err := fs.Glob(fsys, path.Join(dir, "*.yaml"))
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("catalog: no *.yaml in %s", dir)
	}
	c := &Catalog{byName: make(map[string]*Profile)}
	var errs []error
	for _, name := range names {
		raw, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		var f file
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
			errs = append(errs, fmt.Errorf("catalog %s: %w", name, err))
			continue
		}
		for _, p := range f.Profiles {
			p.File = name
			if prev, dup := c.byName[p.Name]; dup {
				errs = append(errs, fmt.Errorf("catalog %s: profile %q is already defined in %s", name, p.Name, prev.File))
				continue
			}
			c.byName[p.Name] = p
			c.profiles = append(c.profiles, p)
		}
	}
	for _, p := range c.profiles {
		errs = append(errs, c.check(p)...)
	}
	errs = append(errs, c.checkIncludes()...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// check validates one profile and parses its entries' ports.
func (c *Catalog) check(p *Profile) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("catalog %s: profile %q: %s", p.File, p.Name, fmt.Sprintf(format, args...)))
	}
	if !profileName.MatchString(p.Name) {
		bad("not a profile name (lower-case letters, digits, '-')")
	}
	if p.Product == "" || p.Summary == "" {
		bad("product and summary are required")
	}
	if !seedFile.MatchString(p.Seed) {
		bad("seed %q is not a seed file name like 001_6cf668ca87b1cdda.txt", p.Seed)
	}
	if len(p.Entries) == 0 && len(p.Includes) == 0 {
		bad("no entries and no includes")
	}
	var used []string
	for i, e := range p.Entries {
		e.profile = p
		at := fmt.Sprintf("entries[%d] (line %d)", i, e.Line)
		if e.Line <= 0 {
			bad("%s: line is required (the row's line in %s)", at, p.Seed)
		}
		if len(e.Clouds) == 0 {
			e.Clouds = p.Clouds
		}
		if len(e.Clouds) == 0 {
			bad("%s: no clouds (set clouds on the entry or the profile)", at)
		}
		for _, cl := range e.Clouds {
			if cl != CloudAll && !slices.Contains(Clouds, cl) {
				bad("%s: cloud %q is not one of %s, %s", at, cl, strings.Join(Clouds, ", "), CloudAll)
			}
		}
		if len(e.ServiceTags) == 0 {
			e.ServiceTags = p.ServiceTags
		}
		if e.Purpose == "" {
			bad("%s: purpose is required", at)
		}
		if len(e.Ports) == 0 {
			bad("%s: ports are required", at)
		}
		for _, s := range e.Ports {
			pr, err := policy.ParsePort(s)
			if err != nil {
				bad("%s: %v", at, err)
				continue
			}
			e.ports = append(e.ports, pr)
		}
		if len(e.Hosts) == 0 {
			bad("%s: hosts are required", at)
		}
		for _, h := range append(slices.Clone(e.Hosts), e.Narrow) {
			if h == "" {
				continue
			}
			if err := checkTemplate(h); err != nil {
				bad("%s: %v", at, err)
			}
		}
		if e.Narrow != "" && !slices.ContainsFunc(e.Hosts, func(h string) bool { return strings.HasPrefix(h, "*") }) {
			bad("%s: narrow is for an entry with a wildcard host", at)
		}
		if e.Narrow != "" && len(e.Hosts) != 1 {
			bad("%s: narrow needs exactly one host to replace", at)
		}
		for _, h := range e.Hosts {
			for _, name := range placeholders(h) {
				if !slices.Contains(used, name) {
					used = append(used, name)
				}
			}
		}
	}
	slices.Sort(used)
	declared := slices.Sorted(slices.Values(p.Params))
	if !slices.Equal(used, declared) {
		bad("params %v do not match the placeholders its hosts use %v", declared, used)
	}
	return errs
}

// checkTemplate checks that a host template is a valid pattern once its
// placeholders are filled, and names only known parameters.
func checkTemplate(h string) error {
	values := make(map[string]string)
	for _, name := range placeholders(h) {
		p, ok := ParamByName(name)
		if !ok {
			return fmt.Errorf("host %q: unknown placeholder <%s>", h, name)
		}
		values[name] = "example"
		if p.Host {
			values[name] = "host.example.com"
		}
	}
	rendered, _, _ := render(h, values)
	if _, err := policy.ParsePattern(rendered); err != nil {
		return fmt.Errorf("host %q: %w", h, err)
	}
	if strings.ContainsAny(placeholder.ReplaceAllString(h, ""), "<>") {
		return fmt.Errorf("host %q: unbalanced placeholder", h)
	}
	return nil
}

// checkIncludes checks that includes name known profiles and form no cycle.
func (c *Catalog) checkIncludes() []error {
	var errs []error
	const (
		visiting = 1
		done     = 2
	)
	state := make(map[string]int)
	var visit func(p *Profile, chain []string) bool
	visit = func(p *Profile, chain []string) bool {
		switch state[p.Name] {
		case visiting:
			errs = append(errs, fmt.Errorf("catalog %s: profile %q: includes form a cycle: %s", p.File, p.Name, strings.Join(append(chain, p.Name), " > ")))
			return false
		case done:
			return true
		}
		state[p.Name] = visiting
		ok := true
		for _, inc := range p.Includes {
			q, found := c.byName[inc]
			if !found {
				errs = append(errs, fmt.Errorf("catalog %s: profile %q: includes unknown profile %q", p.File, p.Name, inc))
				ok = false
				continue
			}
			ok = visit(q, append(chain, p.Name)) && ok
		}
		state[p.Name] = done
		return ok
	}
	for _, p := range c.profiles {
		visit(p, nil)
	}
	return errs
}
