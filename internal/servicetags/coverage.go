package servicetags

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
)

// ReportSchema is the version of the coverage report's JSON; it changes
// only when a field changes meaning or goes away.
const ReportSchema = 1

// Coverage of one endpoint.
const (
	Covered = "covered" // every address it was given is in some tag
	Partial = "partial" // some are
	None    = "none"    // none is: the CDN-served names
)

// Observed is what one endpoint name was really given: by the daemon to its
// clients (the ledger), or by a resolver now.
type Observed struct {
	Name  string
	Addrs []netip.Addr
}

// CoverageInput is what a coverage report is built from.
type CoverageInput struct {
	Index *Index
	// ASN adds each address's origin AS; nil leaves it out.
	ASN *ASNTable
	// Source says where the addresses come from, in words ("the daemon's
	// ledger at http://127.0.0.1:9053").
	Source string
	// Observed endpoints; those without addresses are reported as
	// unobserved.
	Observed []Observed
	// Unresolvable names (wildcard patterns with --resolve) are listed as
	// such: only the ledger knows which names below them are used.
	Unresolvable []string
}

// Report is the coverage report; its JSON is the contract of
// `fqdngate coverage --json` (DESIGN section 13).
type Report struct {
	Schema      int              `json:"schema"`
	ServiceTags ReportFile       `json:"service_tags"`
	Source      string           `json:"source"`
	Endpoints   []EndpointReport `json:"endpoints"`
	// Unobserved endpoints had no address to judge (not asked for while
	// the ledger kept them, or not resolving now).
	Unobserved []string `json:"unobserved"`
	// Unresolvable are wildcard patterns that --resolve cannot ask for.
	Unresolvable []string `json:"unresolvable"`
	Answer       Answer   `json:"answer"`

	withASN bool // an ASN table was given: the table shows the column
}

// ReportFile identifies the service tags file the report used.
type ReportFile struct {
	File         string `json:"file"`
	ChangeNumber int64  `json:"change_number"`
	Cloud        string `json:"cloud"`
	Tags         int    `json:"tags"`
	Prefixes     int    `json:"prefixes"`
}

// EndpointReport is one endpoint.
type EndpointReport struct {
	Name      string          `json:"name"`
	Coverage  string          `json:"coverage"`
	Addresses []AddressReport `json:"addresses"`
	// Used is how many distinct addresses the endpoint was given.
	Used int `json:"used"`
	// TagRule is the narrowest tag rule carrying the covered addresses;
	// nil when no address is in a tag.
	TagRule *TagRule `json:"tag_rule,omitempty"`
	// ASes are the origin systems of its addresses (with --asn-prefixes).
	ASes []ASReport `json:"ases,omitempty"`
}

// AddressReport is one address of an endpoint.
type AddressReport struct {
	Addr netip.Addr `json:"addr"`
	// Tags are the most specific tags containing the address (those listing
	// the longest prefix that holds it); empty when none does.
	Tags []string `json:"tags"`
	// Prefix is that longest prefix; absent when no tag holds the address.
	Prefix *netip.Prefix `json:"prefix,omitempty"`
	// ASN and ASName are the origin AS, with --asn-prefixes.
	ASN    uint32 `json:"asn,omitempty"`
	ASName string `json:"as_name,omitempty"`
}

// TagRule is what a service-tag rule for an endpoint would open.
type TagRule struct {
	// Tags: for each covered address, the tag among its most specific ones
	// that opens the fewest addresses.
	Tags []string `json:"tags"`
	// Prefixes is how many prefixes those tags hold together.
	Prefixes int `json:"prefixes"`
	// Opens is what they hold, overlaps counted once.
	Opens Breadth `json:"opens"`
	// Carries is how many of the endpoint's addresses the rule holds.
	Carries int `json:"carries"`
}

// ASReport is what allowing a whole origin AS would open.
type ASReport struct {
	ASN      uint32  `json:"asn"`
	Name     string  `json:"name,omitempty"`
	Prefixes int     `json:"prefixes"`
	Opens    Breadth `json:"opens"`
	// Carries is how many of the endpoint's addresses it originates.
	Carries int `json:"carries"`
}

// Answer is Q3's answer from the data: which endpoints a tag rule could
// carry, and which need FQDN enforcement anyway.
type Answer struct {
	// TagRule lists the covered endpoints.
	TagRule []string `json:"tag_rule"`
	// FQDNOnly lists the endpoints with an address outside every tag.
	FQDNOnly []string `json:"fqdn_only"`
	// Tags is one rule for every covered endpoint together: its tags,
	// prefixes and breadth.
	Tags *TagRule `json:"tags,omitempty"`
	// Text is the answer in sentences, as the terminal prints it.
	Text []string `json:"text"`
}

// BuildCoverage judges every observed endpoint against the index.
func BuildCoverage(in CoverageInput) *Report {
	f := in.Index.File()
	r := &Report{
		Schema:       ReportSchema,
		ServiceTags:  ReportFile{File: f.Path, ChangeNumber: f.ChangeNumber, Cloud: f.Cloud, Tags: len(f.Tags), Prefixes: in.Index.Prefixes()},
		Source:       in.Source,
		Endpoints:    []EndpointReport{},
		Unobserved:   []string{},
		Unresolvable: append([]string{}, in.Unresolvable...),
		withASN:      in.ASN != nil,
	}
	obs := slices.Clone(in.Observed)
	slices.SortFunc(obs, func(a, b Observed) int { return strings.Compare(a.Name, b.Name) })
	allTags := map[*Tag]bool{}
	for _, o := range obs {
		addrs := uniqueAddrs(o.Addrs)
		if len(addrs) == 0 {
			r.Unobserved = append(r.Unobserved, o.Name)
			continue
		}
		ep := EndpointReport{Name: o.Name, Used: len(addrs), Addresses: make([]AddressReport, 0, len(addrs))}
		chosen := map[*Tag]bool{}
		carried := 0
		ases := map[*AS]int{}
		for _, a := range addrs {
			ar := AddressReport{Addr: a, Tags: []string{}}
			if m, ok := in.Index.Lookup(a); ok {
				p := m.Prefix
				ar.Prefix = &p
				for _, t := range m.Tags {
					ar.Tags = append(ar.Tags, t.Name)
				}
				chosen[narrowest(m.Tags)] = true
				carried++
			}
			if as, _ := in.ASN.Origin(a); as != nil {
				ar.ASN, ar.ASName = as.Number, as.Name
				ases[as]++
			}
			ep.Addresses = append(ep.Addresses, ar)
		}
		switch {
		case carried == len(addrs):
			ep.Coverage = Covered
		case carried > 0:
			ep.Coverage = Partial
		default:
			ep.Coverage = None
		}
		if carried > 0 {
			ep.TagRule = tagRule(chosen, carried)
		}
		for as, n := range ases {
			ep.ASes = append(ep.ASes, ASReport{ASN: as.Number, Name: as.Name, Prefixes: len(as.Prefixes), Opens: BreadthOf(as.Prefixes), Carries: n})
		}
		slices.SortFunc(ep.ASes, func(a, b ASReport) int { return cmp.Compare(a.ASN, b.ASN) })
		if ep.Coverage == Covered {
			r.Answer.TagRule = append(r.Answer.TagRule, ep.Name)
			for t := range chosen {
				allTags[t] = true
			}
		} else {
			r.Answer.FQDNOnly = append(r.Answer.FQDNOnly, ep.Name)
		}
		r.Endpoints = append(r.Endpoints, ep)
	}
	if r.Answer.TagRule == nil {
		r.Answer.TagRule = []string{}
	}
	if r.Answer.FQDNOnly == nil {
		r.Answer.FQDNOnly = []string{}
	}
	if len(allTags) > 0 {
		carries := 0
		for _, ep := range r.Endpoints {
			if ep.Coverage == Covered {
				carries += ep.Used
			}
		}
		r.Answer.Tags = tagRule(allTags, carries)
	}
	r.Answer.Text = answerText(r)
	return r
}

func uniqueAddrs(in []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(in))
	for _, a := range in {
		if a.IsValid() {
			out = append(out, a.Unmap())
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// narrowest is the tag opening the least (Breadth.size; by name on a tie),
// so that a suggested rule is as tight as the file allows.
func narrowest(ts []*Tag) *Tag {
	var best *Tag
	var bestN uint64
	for _, t := range ts {
		n := BreadthOf(t.Prefixes).size()
		if best == nil || n < bestN || n == bestN && t.Name < best.Name {
			best, bestN = t, n
		}
	}
	return best
}

func tagRule(tags map[*Tag]bool, carries int) *TagRule {
	tr := &TagRule{Carries: carries}
	var ps []netip.Prefix
	for t := range tags {
		tr.Tags = append(tr.Tags, t.Name)
		ps = append(ps, t.Prefixes...)
	}
	slices.Sort(tr.Tags)
	tr.Opens = BreadthOf(ps)
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	tr.Prefixes = len(slices.Compact(ps))
	return tr
}

// Count formats an address count; the saturated value reads as what it
// means.
func Count(n uint64) string {
	if n == math.MaxUint64 {
		return "2^64 or more"
	}
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func answerText(r *Report) []string {
	total := len(r.Endpoints)
	if total == 0 {
		return []string{"No endpoint had an address to judge: nothing to answer from data yet."}
	}
	var out []string
	if n := len(r.Answer.TagRule); n == 0 {
		out = append(out, fmt.Sprintf("No service tag carries any of the %s: a tag rule cannot replace FQDN enforcement here.", plural(total, "endpoint", "endpoints")))
	} else {
		t := r.Answer.Tags
		out = append(out, fmt.Sprintf("A service-tag rule could carry %d of %s: %s. It would allow %s (%s, %s) for the %s these endpoints really used.",
			n, plural(total, "endpoint", "endpoints"), strings.Join(r.Answer.TagRule, ", "), strings.Join(t.Tags, ", "),
			plural(t.Prefixes, "prefix", "prefixes"), t.Opens, plural(t.Carries, "address", "addresses")))
	}
	if len(r.Answer.FQDNOnly) > 0 {
		var parts []string
		for _, ep := range r.Endpoints {
			switch ep.Coverage {
			case None:
				parts = append(parts, ep.Name+" (no tag holds its addresses)")
			case Partial:
				parts = append(parts, fmt.Sprintf("%s (only %d of %d addresses in a tag)", ep.Name, ep.TagRule.Carries, ep.Used))
			}
		}
		verb := "need"
		if len(r.Answer.FQDNOnly) == 1 {
			verb = "needs"
		}
		out = append(out, fmt.Sprintf("%s %s FQDN enforcement anyway: %s. An address outside every tag is, as a rule, a CDN's (Akamai, Edgio, Azure Front Door's shared edge): CDN answers are shared by all the CDN's customers and Microsoft's tags do not list them.",
			plural(len(r.Answer.FQDNOnly), "endpoint", "endpoints"), verb, strings.Join(parts, "; ")))
	}
	// The ASN half of the question: what each origin AS would open.
	seen := map[uint32]bool{}
	var ases []string
	for _, ep := range r.Endpoints {
		for _, a := range ep.ASes {
			if seen[a.ASN] {
				continue
			}
			seen[a.ASN] = true
			name := fmt.Sprintf("AS%d", a.ASN)
			if a.Name != "" {
				name += " " + a.Name
			}
			ases = append(ases, fmt.Sprintf("%s would open %s (%s), for every customer it serves", name, a.Opens, plural(a.Prefixes, "prefix", "prefixes")))
		}
	}
	if len(ases) > 0 {
		out = append(out, "Allowing the origin AS instead: "+strings.Join(ases, "; ")+".")
	}
	return out
}

// WriteJSON writes the report as JSON (the --json contract).
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report for a terminal: every address with its
// most specific tags, what a tag rule would open per endpoint, and the
// answer.
func (r *Report) WriteTable(w io.Writer) error {
	st := r.ServiceTags
	fmt.Fprintf(w, "Service tags: %s (change %d, %s cloud, %d tags, %d prefixes)\n", st.File, st.ChangeNumber, st.Cloud, st.Tags, st.Prefixes)
	fmt.Fprintf(w, "Addresses:    %s\n", r.Source)
	if len(r.Endpoints) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		head := "ENDPOINT\tCOVERAGE\tADDRESS\tMOST SPECIFIC TAGS\tPREFIX"
		if r.withASN {
			head += "\tORIGIN AS"
		}
		fmt.Fprintln(tw, head)
		for _, ep := range r.Endpoints {
			for i, a := range ep.Addresses {
				name, cov := "", ""
				if i == 0 {
					name, cov = ep.Name, ep.Coverage
				}
				tags, pfx, as := "-", "-", "-"
				if len(a.Tags) > 0 {
					tags = strings.Join(a.Tags, ", ")
				}
				if a.Prefix != nil {
					pfx = a.Prefix.String()
				}
				if a.ASN != 0 {
					as = fmt.Sprintf("AS%d", a.ASN)
					if a.ASName != "" {
						as += " " + a.ASName
					}
				}
				if r.withASN {
					pfx += "\t" + as
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, cov, a.Addr, tags, pfx)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w, "\nWhat a tag rule would open, against what each endpoint used:")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ENDPOINT\tTAG RULE\tOPENS\tCARRIES")
		for _, ep := range r.Endpoints {
			tags, opens, carries := "-", "-", fmt.Sprintf("0 of %d", ep.Used)
			if tr := ep.TagRule; tr != nil {
				tags, opens, carries = strings.Join(tr.Tags, ", "), tr.Opens.String(), fmt.Sprintf("%d of %d", tr.Carries, ep.Used)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ep.Name, tags, opens, carries)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(r.Unobserved) > 0 {
		fmt.Fprintf(w, "\nNo addresses to judge: %s\n", strings.Join(r.Unobserved, ", "))
	}
	if len(r.Unresolvable) > 0 {
		fmt.Fprintf(w, "\nWildcards (only the ledger knows the names below them): %s\n", strings.Join(r.Unresolvable, ", "))
	}
	fmt.Fprintln(w, "\nAnswer:")
	for _, s := range r.Answer.Text {
		fmt.Fprintf(w, "  %s\n", s)
	}
	return nil
}
