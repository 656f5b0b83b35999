// Package catalog holds the endpoint lists Microsoft publishes for Azure
// Sphere, Azure IoT Hub, Azure Arc and Azure Stack HCI, transcribed from the
// project's seed documents into data/*.yaml and embedded in the binary.
//
// A profile is a named list of entries (one per row of a seed's table) and
// may include other profiles. Entries keep everything the seed says about an
// endpoint: ports, purpose, whether and when it is required, the private-link
// column, service tags, the cloud, and the seed file and line it came from.
// Host names may hold placeholders such as <region>; Resolve fills them.
package catalog

import (
	"embed"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/fqdngate/fqdngate/internal/didyoumean"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// Clouds fqdngate knows, as in the config's `cloud:`.
const (
	CloudPublic = "public"
	CloudUSGov  = "usgov"
	CloudChina  = "china"
	// CloudAll marks an entry the seed lists without a cloud.
	CloudAll = "all"
)

// Clouds lists the clouds a config may name.
var Clouds = []string{CloudPublic, CloudUSGov, CloudChina}

// Catalog is a loaded, validated set of profiles. It is immutable.
type Catalog struct {
	profiles []*Profile
	byName   map[string]*Profile
}

// Profile is a named list of endpoints, e.g. azure-sphere.
type Profile struct {
	Name    string `yaml:"name"`
	Product string `yaml:"product"`
	Summary string `yaml:"summary"`
	// Seed is the seed file the entries come from (one entry may override).
	Seed string `yaml:"seed"`
	// Clouds is the default of the entries' clouds.
	Clouds []string `yaml:"clouds"`
	// Includes names profiles whose entries this one also allows.
	Includes []string `yaml:"includes"`
	// Params declares the placeholders the profile's own hosts use; the
	// loader checks it against the hosts so a typo cannot slip through.
	Params      []string `yaml:"params"`
	ServiceTags []string `yaml:"service_tags"`
	Notes       []string `yaml:"notes"`
	Entries     []*Entry `yaml:"entries"`

	// File is the data file the profile was read from (internal/catalog/data/...).
	File string `yaml:"-"`
}

// Entry is one row of a seed's endpoint table.
type Entry struct {
	// Line is the row's line in the seed file; Also lists other lines of
	// the same seed that name the same endpoint.
	Line int   `yaml:"line"`
	Also []int `yaml:"also"`
	// Protocol is the seed's protocol column, where it has one.
	Protocol string   `yaml:"protocol"`
	Ports    []string `yaml:"ports"`
	// Hosts are FQDN patterns, possibly with <param> placeholders.
	Hosts []string `yaml:"hosts"`
	// Path is the URL path the seed gives (a proxy can use it; a DNS
	// firewall allows the host).
	Path     string `yaml:"path"`
	Purpose  string `yaml:"purpose"`
	Optional *bool  `yaml:"required"`
	// Feature names the optional feature or capability the entry serves.
	Feature string `yaml:"feature"`
	// When is the seed's "when required" column.
	When string `yaml:"when"`
	// PrivateLink is the seed's "endpoint used with private link" column.
	PrivateLink string   `yaml:"private_link"`
	ServiceTags []string `yaml:"service_tags"`
	Clouds      []string `yaml:"clouds"`
	// Narrow is a narrower host template that replaces a wildcard host
	// when its parameter is set (e.g. the cloud witness' storage account).
	Narrow string `yaml:"narrow"`
	// Advice tells how to narrow a wildcard the seed publishes.
	Advice string `yaml:"advice"`

	ports   []policy.PortRange
	profile *Profile
}

// Required reports whether the seed calls the entry required (the default).
func (e *Entry) Required() bool { return e.Optional == nil || *e.Optional }

// Profile is the profile the entry belongs to.
func (e *Entry) Profile() *Profile { return e.profile }

// Source is "seed 001 line 15", for tables and rule sources.
func (e *Entry) Source() string {
	return fmt.Sprintf("seed %s line %d", seedNumber(e.profile.Seed), e.Line)
}

// InCloud reports whether the entry applies in cloud; "" means any.
func (e *Entry) InCloud(cloud string) bool {
	return cloud == "" || slices.Contains(e.Clouds, cloud) || slices.Contains(e.Clouds, CloudAll)
}

// seedNumber shortens "001_6cf668ca87b1cdda.txt" to "001".
func seedNumber(file string) string {
	if n, _, ok := strings.Cut(file, "_"); ok {
		return n
	}
	return file
}

//go:embed data/*.yaml
var data embed.FS

// Default is the catalog built into the binary. It is loaded once; the
// embedded data is validated by the package's tests, so an error here means
// a broken build.
var Default = sync.OnceValues(func() (*Catalog, error) { return Load(data, "data") })

// Profiles lists the profiles in file order.
func (c *Catalog) Profiles() []*Profile { return c.profiles }

// Profile finds a profile by name.
func (c *Catalog) Profile(name string) (*Profile, bool) {
	p, ok := c.byName[name]
	return p, ok
}

// Item is one entry reached through a profile, with the include path that
// led to it.
type Item struct {
	Entry *Entry
	// Via lists the profiles from the one asked for down to the entry's own
	// (just the entry's own when it is not included).
	Via []string
}

// Items lists a profile's entries and those of the profiles it includes,
// depth first, keeping those that apply in cloud ("" keeps all).
func (c *Catalog) Items(name, cloud string) ([]Item, error) {
	p, ok := c.byName[name]
	if !ok {
		return nil, c.unknown(name)
	}
	var out []Item
	var walk func(p *Profile, via []string)
	walk = func(p *Profile, via []string) {
		via = append(slices.Clip(via), p.Name)
		for _, inc := range p.Includes {
			walk(c.byName[inc], via)
		}
		for _, e := range p.Entries {
			if e.InCloud(cloud) {
				out = append(out, Item{Entry: e, Via: via})
			}
		}
	}
	walk(p, nil)
	return out, nil
}

// AllParams lists the placeholders a profile's hosts use, its includes'
// too, in first-use order: required ones (in hosts) and optional ones (in
// narrow templates) separately.
func (c *Catalog) AllParams(name string) (required, optional []string, err error) {
	items, err := c.Items(name, "")
	if err != nil {
		return nil, nil, err
	}
	for _, it := range items {
		for _, h := range it.Entry.Hosts {
			for _, p := range placeholders(h) {
				if !slices.Contains(required, p) {
					required = append(required, p)
				}
			}
		}
		for _, p := range placeholders(it.Entry.Narrow) {
			if !slices.Contains(optional, p) {
				optional = append(optional, p)
			}
		}
	}
	return required, optional, nil
}

// Clouds lists the clouds the profile (with includes) has entries for.
func (c *Catalog) Clouds(name string) []string {
	var out []string
	for _, cl := range Clouds {
		if items, _ := c.Items(name, cl); len(items) > 0 {
			out = append(out, cl)
		}
	}
	return out
}

func (c *Catalog) unknown(name string) error {
	return &UnknownProfileError{Name: name, Near: c.nearest(name)}
}

// nearest suggests a profile name for a typo (internal/didyoumean).
func (c *Catalog) nearest(name string) string {
	names := make([]string, len(c.profiles))
	for i, p := range c.profiles {
		names[i] = p.Name
	}
	if near := didyoumean.Nearest(name, names); len(near) > 0 {
		return near[0]
	}
	return ""
}
