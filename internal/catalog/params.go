package catalog

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/fqdngate/fqdngate/internal/didyoumean"
)

// UnknownProfileError is a profile name the catalog does not have.
type UnknownProfileError struct {
	Name string
	// Near is the profile the name is probably a typo of, if any.
	Near string
}

func (e *UnknownProfileError) Error() string {
	msg := fmt.Sprintf("unknown profile %q", e.Name)
	if e.Near != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", e.Near)
	}
	return msg + "; 'fqdngate catalog list' shows them"
}

// NoEndpointsError is a profile used in a cloud its seed does not cover.
type NoEndpointsError struct {
	Profile, Cloud string
	Clouds         []string
}

func (e *NoEndpointsError) Error() string {
	return fmt.Sprintf("profile %q has no endpoints for cloud %q, only for %s", e.Profile, e.Cloud, strings.Join(e.Clouds, ", "))
}

// Param is a placeholder catalog hosts may hold, written <name>.
type Param struct {
	Name string
	// Help says what the value is, for errors and `catalog show`.
	Help string
	// Host is true when the value is a whole host name rather than one
	// label of one.
	Host bool
}

// Params lists every placeholder the catalog knows. The region comes from
// the config's top-level `region:`; the others from `params:`.
var Params = []Param{
	{Name: "region", Help: `the Azure region, from the config's region: ("East US 2" becomes eastus2)`},
	{Name: "iot_hub", Help: "the IoT hub's name, the first label of <iot_hub>.azure-devices.net"},
	{Name: "witness_storage_account", Help: "the storage account of the cluster cloud witness, the first label of <witness_storage_account>.blob.core.windows.net"},
	{Name: "scvmm_server", Help: "the host name of the SCVMM management server", Host: true},
	{Name: "vcenter_server", Help: "the host name of the vCenter server", Host: true},
}

// ParamByName finds a known placeholder.
func ParamByName(name string) (Param, bool) {
	for _, p := range Params {
		if p.Name == name {
			return p, true
		}
	}
	return Param{}, false
}

var (
	placeholder = regexp.MustCompile(`<([a-z_]+)>`)
	// label is one DNS label of letters, digits and inner hyphens, the form
	// Azure resource names take in host names.
	label = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

const maxRegionLen = 32

// NormalizeRegion turns "East US 2" into "eastus2", the way the seeds say
// regional endpoint names are formed (seed 002 line 50).
func NormalizeRegion(r string) string {
	return strings.ToLower(strings.Join(strings.Fields(r), ""))
}

// CheckParam validates a parameter's value, as given in a config.
func CheckParam(name, value string) error {
	p, ok := ParamByName(name)
	if !ok {
		known := make([]string, len(Params))
		for i, p := range Params {
			known[i] = p.Name
		}
		if near := didyoumean.Nearest(name, known); len(near) > 0 {
			return fmt.Errorf("unknown parameter %q; %s", name, didyoumean.Phrase(near, nil))
		}
		return fmt.Errorf("unknown parameter %q; the catalog knows %s", name, strings.Join(known, ", "))
	}
	v := strings.ToLower(value)
	if name == "region" {
		// Azure's region names are short; the bound keeps templates such
		// as san-af-<region>-prod within a 63-character label.
		if v = NormalizeRegion(value); len(v) > maxRegionLen {
			return fmt.Errorf("parameter region: %q is longer than %d characters without spaces; Azure region names are like \"East US 2\"", value, maxRegionLen)
		}
	}
	if p.Host {
		labels := strings.Split(strings.TrimSuffix(v, "."), ".")
		for _, l := range labels {
			if !label.MatchString(l) {
				return fmt.Errorf("parameter %s: %q is not a host name (%s)", name, value, p.Help)
			}
		}
		return nil
	}
	if !label.MatchString(v) {
		return fmt.Errorf("parameter %s: %q is not a single DNS label of letters, digits and hyphens (%s)", name, value, p.Help)
	}
	return nil
}

// placeholders lists the <name>s in a template.
func placeholders(s string) []string {
	var out []string
	for _, m := range placeholder.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

// MissingParamError says which parameter a profile needs.
type MissingParamError struct {
	Profile string
	Param   Param
	// Host is the template that needs it.
	Host string
}

func (e *MissingParamError) Error() string {
	how := "set params." + e.Param.Name
	if e.Param.Name == "region" {
		how = "set region:"
	}
	return fmt.Sprintf("profile %q needs parameter %q for %s: %s (%s)", e.Profile, e.Param.Name, e.Host, how, e.Param.Help)
}

// render fills a template's placeholders from values; ok is false, with the
// first missing name, when one is not set.
func render(tmpl string, values map[string]string) (string, string, bool) {
	missing := ""
	out := placeholder.ReplaceAllStringFunc(tmpl, func(m string) string {
		name := m[1 : len(m)-1]
		v, ok := values[name]
		if !ok || v == "" {
			if missing == "" {
				missing = name
			}
			return m
		}
		if name == "region" {
			return NormalizeRegion(v)
		}
		return strings.ToLower(v)
	})
	return out, missing, missing == ""
}

// CheckParam validates a parameter for the catalog's profiles; it
// implements config.ProfileSource.
func (c *Catalog) CheckParam(name, value string) error { return CheckParam(name, value) }
