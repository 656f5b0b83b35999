package catalog

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"gopkg.in/yaml.v3"
)

// Export formats.
const (
	FormatYAML   = "yaml"
	FormatJSON   = "json"
	FormatCSV    = "csv"
	FormatConfig = "config"
)

// Formats lists the export formats.
var Formats = []string{FormatYAML, FormatJSON, FormatCSV, FormatConfig}

// WriteList prints one line per profile: what it is for, how many hosts,
// which clouds and which parameters it needs.
func (c *Catalog) WriteList(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROFILE\tPRODUCT\tENTRIES\tHOSTS\tCLOUDS\tPARAMS\tINCLUDES")
	for _, p := range c.profiles {
		items, _ := c.Items(p.Name, "")
		hosts := 0
		for _, it := range items {
			hosts += len(it.Entry.Hosts)
		}
		req, opt := c.params(p.Name)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\n", p.Name, p.Product, len(items), hosts,
			strings.Join(c.Clouds(p.Name), ","), paramList(req, opt), orDash(strings.Join(p.Includes, ",")))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "\nPARAMS in (parentheses) are optional. 'fqdngate catalog show NAME' shows a profile's entries.")
	return err
}

func (c *Catalog) params(name string) (required, optional []string) {
	req, opt, _ := c.AllParams(name)
	return req, opt
}

func paramList(req, opt []string) string {
	out := slices.Clone(req)
	for _, o := range opt {
		out = append(out, "("+o+")")
	}
	return orDash(strings.Join(out, ","))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteShow prints a profile as a readable table, entries of included
// profiles after a heading of their own. cloud ("" for all) filters the
// entries; values fill placeholders where given.
func (c *Catalog) WriteShow(w io.Writer, name, cloud string, values map[string]string) error {
	p, ok := c.byName[name]
	if !ok {
		return c.unknown(name)
	}
	items, err := c.Items(name, cloud)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s: %s\n%s\n\n", p.Name, p.Product, p.Summary)
	fmt.Fprintf(w, "source:   seed %s\n", p.Seed)
	fmt.Fprintf(w, "clouds:   %s\n", strings.Join(c.Clouds(name), ", "))
	if len(p.Includes) > 0 {
		fmt.Fprintf(w, "includes: %s\n", strings.Join(p.Includes, ", "))
	}
	req, opt := c.params(name)
	for _, n := range req {
		pr, _ := ParamByName(n)
		fmt.Fprintf(w, "needs:    %s, %s\n", n, pr.Help)
	}
	for _, n := range opt {
		pr, _ := ParamByName(n)
		fmt.Fprintf(w, "optional: %s, %s\n", n, pr.Help)
	}
	if len(p.ServiceTags) > 0 {
		fmt.Fprintf(w, "service tags: %s\n", strings.Join(p.ServiceTags, ", "))
	}
	if cloud != "" {
		fmt.Fprintf(w, "showing cloud %s\n", cloud)
	}
	for start := 0; start < len(items); {
		owner := items[start].Entry.profile
		end := start
		for end < len(items) && items[end].Entry.profile == owner {
			end++
		}
		if owner != p {
			fmt.Fprintf(w, "\nincluded from %s (%s):\n", owner.Name, strings.Join(items[start].Via, " > "))
		}
		if err := writeEntries(w, items[start:end], values); err != nil {
			return err
		}
		start = end
	}
	var advice []string
	for _, it := range items {
		if it.Entry.Advice != "" {
			advice = append(advice, fmt.Sprintf("  %s: %s", strings.Join(it.Entry.Hosts, ", "), it.Entry.Advice))
		}
	}
	if len(advice) > 0 {
		fmt.Fprintf(w, "\nwildcards and how to narrow them:\n%s\n", strings.Join(advice, "\n"))
	}
	if len(p.Notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range p.Notes {
			fmt.Fprintf(w, "  - %s\n", n)
		}
	}
	return nil
}

// writeEntries prints one table; the when and private-link columns only
// where some entry has them, so Sphere's table stays narrow.
func writeEntries(w io.Writer, items []Item, values map[string]string) error {
	hasWhen := slices.ContainsFunc(items, func(it Item) bool { return it.Entry.When != "" })
	hasPL := slices.ContainsFunc(items, func(it Item) bool { return it.Entry.PrivateLink != "" })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := "\nHOST\tPORTS\tCLOUDS\tNEED"
	if hasWhen {
		head += "\tWHEN"
	}
	if hasPL {
		head += "\tPRIVATE LINK"
	}
	fmt.Fprintln(tw, head+"\tSOURCE\tPURPOSE")
	for _, it := range items {
		e := it.Entry
		for _, h := range e.Hosts {
			host, _, _ := render(h, values)
			row := fmt.Sprintf("%s\t%s\t%s\t%s", host+e.Path, strings.Join(e.Ports, " "), strings.Join(e.Clouds, ","), need(e))
			if hasWhen {
				row += "\t" + orDash(e.When)
			}
			if hasPL {
				row += "\t" + orDash(e.PrivateLink)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", row, e.Source(), e.Purpose)
		}
	}
	return tw.Flush()
}

func need(e *Entry) string {
	s := "required"
	if !e.Required() {
		s = "optional"
	}
	if e.Feature != "" {
		s += " (" + e.Feature + ")"
	}
	return s
}

// Record is one host of a profile in an export: everything the catalog
// knows about it, flat. Its field names are part of the export formats.
type Record struct {
	Profile     string   `json:"profile" yaml:"profile"`
	Via         []string `json:"via" yaml:"via,flow"`
	Host        string   `json:"host" yaml:"host"`
	Path        string   `json:"path,omitempty" yaml:"path,omitempty"`
	Ports       []string `json:"ports" yaml:"ports,flow"`
	Protocol    string   `json:"protocol,omitempty" yaml:"protocol,omitempty"`
	Purpose     string   `json:"purpose" yaml:"purpose"`
	Required    bool     `json:"required" yaml:"required"`
	Feature     string   `json:"feature,omitempty" yaml:"feature,omitempty"`
	When        string   `json:"when,omitempty" yaml:"when,omitempty"`
	PrivateLink string   `json:"private_link,omitempty" yaml:"private_link,omitempty"`
	ServiceTags []string `json:"service_tags,omitempty" yaml:"service_tags,omitempty,flow"`
	Clouds      []string `json:"clouds" yaml:"clouds,flow"`
	Narrow      string   `json:"narrow,omitempty" yaml:"narrow,omitempty"`
	Advice      string   `json:"advice,omitempty" yaml:"advice,omitempty"`
	Seed        string   `json:"seed" yaml:"seed"`
	Line        int      `json:"line" yaml:"line"`
	Also        []int    `json:"also,omitempty" yaml:"also,omitempty,flow"`
}

// Records flattens a profile for export; placeholders with a value are
// filled, the others kept as <name>.
func (c *Catalog) Records(name, cloud string, values map[string]string) ([]Record, error) {
	items, err := c.Items(name, cloud)
	if err != nil {
		return nil, err
	}
	var out []Record
	for _, it := range items {
		e := it.Entry
		for _, h := range e.Hosts {
			host, _, _ := render(h, values)
			narrow, _, _ := render(e.Narrow, values)
			out = append(out, Record{
				Profile: e.profile.Name, Via: it.Via, Host: host, Path: e.Path,
				Ports: e.Ports, Protocol: e.Protocol, Purpose: e.Purpose,
				Required: e.Required(), Feature: e.Feature, When: e.When,
				PrivateLink: e.PrivateLink, ServiceTags: e.ServiceTags, Clouds: e.Clouds,
				Narrow: narrow, Advice: e.Advice, Seed: e.profile.Seed, Line: e.Line, Also: e.Also,
			})
		}
	}
	return out, nil
}

// Export writes a profile in one of Formats. The config format is a rules
// snippet for a client group and needs every parameter; the others keep
// unfilled placeholders and list every cloud unless one is given.
func (c *Catalog) Export(w io.Writer, name, format, cloud string, values map[string]string) error {
	if format == FormatConfig {
		return c.exportConfig(w, name, cloud, values)
	}
	recs, err := c.Records(name, cloud, values)
	if err != nil {
		return err
	}
	switch format {
	case FormatJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false) // keep <region> readable
		return enc.Encode(recs)
	case FormatYAML:
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(recs); err != nil {
			return err
		}
		return enc.Close()
	case FormatCSV:
		return writeCSV(w, recs)
	}
	return fmt.Errorf("unknown format %q: one of %s", format, strings.Join(Formats, ", "))
}

var csvHeader = []string{"profile", "via", "host", "path", "ports", "protocol", "purpose", "required", "feature",
	"when", "private_link", "service_tags", "clouds", "narrow", "advice", "seed", "line", "also"}

// writeCSV joins list fields with spaces, which no field contains.
func writeCSV(w io.Writer, recs []Record) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	for _, r := range recs {
		also := make([]string, len(r.Also))
		for i, a := range r.Also {
			also[i] = strconv.Itoa(a)
		}
		if err := cw.Write([]string{r.Profile, strings.Join(r.Via, " "), r.Host, r.Path, strings.Join(r.Ports, " "),
			r.Protocol, r.Purpose, strconv.FormatBool(r.Required), r.Feature, r.When, r.PrivateLink,
			strings.Join(r.ServiceTags, " "), strings.Join(r.Clouds, " "), r.Narrow, r.Advice, r.Seed,
			strconv.Itoa(r.Line), strings.Join(also, " ")}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// exportConfig writes `rules:` for one client group, one rule per catalog
// entry, named after the profile and seed row, with the purpose as a
// comment. Strings are written as JSON strings, which YAML reads as they are.
func (c *Catalog) exportConfig(w io.Writer, name, cloud string, values map[string]string) error {
	if cloud == "" {
		cloud = CloudPublic
	}
	eps, err := c.Resolve(name, cloud, values)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "# Rules of catalog profile %s for cloud %s, to paste into a client group.\n", name, cloud)
	fmt.Fprintf(w, "# Written by 'fqdngate catalog export %s --format config'; 'profiles: [%s]' does the same and follows catalog updates.\n", name, name)
	fmt.Fprintln(w, "rules:")
	used := make(map[string]bool)
	for start := 0; start < len(eps); {
		e := eps[start].Entry
		end := start
		for end < len(eps) && eps[end].Entry == e {
			end++
		}
		rn := fmt.Sprintf("%s-%s-%d", e.profile.Name, seedNumber(e.profile.Seed), e.Line)
		for i := 2; used[rn]; i++ {
			rn = fmt.Sprintf("%s-%s-%d-%d", e.profile.Name, seedNumber(e.profile.Seed), e.Line, i)
		}
		used[rn] = true
		fqdns := make([]string, 0, end-start)
		for _, ep := range eps[start:end] {
			fqdns = append(fqdns, strconv.Quote(ep.Pattern.Text))
		}
		ports := make([]string, len(e.Ports))
		for i, p := range e.Ports {
			ports[i] = strconv.Quote(p)
		}
		fmt.Fprintf(w, "  # %s [%s; %s]\n", oneLine(e.Purpose), need(e), e.Source())
		if e.Advice != "" && !eps[start].Narrowed {
			fmt.Fprintf(w, "  # %s\n", oneLine(e.Advice))
		}
		fmt.Fprintf(w, "  - name: %s\n    fqdn: [%s]\n    ports: [%s]\n", strconv.Quote(rn), strings.Join(fqdns, ", "), strings.Join(ports, ", "))
		start = end
	}
	return nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
