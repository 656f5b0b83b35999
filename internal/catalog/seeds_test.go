package catalog

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The completeness test reads the seed documents themselves and checks that
// every host and URL of their endpoint tables is in the catalog, under the
// profile, port and cloud the seed gives. It does not read the catalog's
// own line numbers: the expectations come from the seed text.
//
// The seeds are copied into testdata/seeds so the test runs in any clone;
// where the project's shared/seeds is beside the repository, the copy must
// be identical to it.

const sharedSeeds = "../../../shared/seeds"

// mention is one endpoint as a seed writes it.
type mention struct {
	seed  string
	line  int
	host  string // as the catalog writes it: "\*" unescaped, placeholders kept
	ports []string
	cloud string
}

func (m mention) String() string {
	return fmt.Sprintf("%s line %d: %s %v (cloud %s)", m.seed, m.line, m.host, m.ports, m.cloud)
}

var (
	// urlRe finds host names and URLs: labels of letters, digits, '-', '*'
	// (escaped or not) and placeholders, a dot-separated TLD, optional
	// scheme, port and path.
	urlRe  = regexp.MustCompile(`(?:(https?)://)?((?:[a-z0-9<>\[\]*-]+\.)+[a-z]{2,})(?::(\d+))?(/[^\s|,]*)?`)
	portRe = regexp.MustCompile(`(TCP|UDP)\s*\|?\s*(\d+)`)
)

// hostsIn extracts the mentions of a text fragment. defPort applies to a
// host written without a scheme; a scheme gives its own port (http 80,
// https 443) and an explicit :port wins.
func hostsIn(text string, defPort string) []mention {
	var out []mention
	// The Markdown seed escapes '*', '[' and ']'.
	text = strings.NewReplacer(`\*`, "*", `\[`, "[", `\]`, "]").Replace(text)
	for _, m := range urlRe.FindAllStringSubmatch(text, -1) {
		host := m[2]
		port := defPort
		switch m[1] {
		case "http":
			port = "tcp/80"
		case "https":
			port = "tcp/443"
		}
		if m[3] != "" {
			port = "tcp/" + m[3]
		}
		out = append(out, mention{host: host, ports: []string{port}})
	}
	return out
}

// table says where a seed's endpoint table is and how to read its lines.
type table struct {
	seed    string
	lines   []int
	profile string
	cloud   string
	read    func(line string) []mention
}

func lines(from, to, step int) []int {
	var out []int
	for i := from; i <= to; i += step {
		out = append(out, i)
	}
	return out
}

// sphereRow reads "MQTT over TCP 8883 host, host Purpose" and the legacy
// seed's "MQTT sur TCP | 8883 | host | ...".
func sphereRow(line string) []mention {
	pm := portRe.FindStringSubmatch(line)
	port := strings.ToLower(pm[1]) + "/" + pm[2]
	return hostsIn(line, port)
}

// firstCell reads tables whose endpoint is the first cell; everything is
// tcp/443 unless a scheme or port says otherwise (seed 002 lines 4-5, 15).
func firstCell(line string) []mention {
	cell, _, _ := strings.Cut(line, "|")
	return hostsIn(cell, "tcp/443")
}

// urlColumn reads "Service | Port | URL | ..." rows.
func urlColumn(line string) []mention {
	cells := strings.Split(line, "|")
	port := "tcp/" + strings.TrimSpace(cells[1])
	ms := hostsIn(cells[2], port)
	for i := range ms {
		// The Port column is the port, whatever scheme the URL carries.
		ms[i].ports = []string{port}
	}
	return ms
}

// wildcardOnly reads a prose line for its escaped wildcard (seed 004
// line 45 also links to a page on www.powershellgallery.com, which is
// documentation, not an endpoint).
func wildcardOnly(line string) []mention {
	return slices.DeleteFunc(hostsIn(line, "tcp/443"), func(m mention) bool { return !strings.HasPrefix(m.host, "*") })
}

const (
	s001 = "001_6cf668ca87b1cdda.txt"
	s002 = "002_cea0e6c4ccc9c64f.txt"
	s003 = "003_4ba8955f7a997bcc.txt"
	s004 = "004_58fdfda1dfe0493e.txt"
)

var tables = []table{
	{s001, lines(12, 15, 1), "azure-sphere", CloudPublic, sphereRow},
	{s001, []int{17}, "azure-sphere-ntp", CloudPublic, sphereRow},
	{s003, []int{10, 11, 12, 14}, "azure-sphere-legacy", CloudPublic, sphereRow},
	{s003, []int{16}, "azure-sphere-legacy-ntp", CloudPublic, sphereRow},

	{s002, lines(21, 45, 2), "azure-arc-k8s", CloudPublic, firstCell},
	{s002, lines(63, 67, 2), "azure-arc-data", CloudPublic, urlColumn},
	{s002, slices.Concat(lines(107, 127, 2), []int{133, 135, 139, 141}), "azure-arc-servers", CloudPublic, firstCell},
	{s002, []int{129, 131}, "azure-arc-servers-wac", CloudPublic, firstCell},
	{s002, []int{137}, "azure-arc-servers-sql", CloudPublic, firstCell},
	{s002, lines(166, 180, 2), "azure-arc-servers-esu", CloudPublic, firstCell},
	{s002, lines(192, 226, 2), "azure-arc-resource-bridge", CloudPublic, urlColumn},

	{s004, lines(54, 57, 1), "azure-stack-hci", CloudPublic, firstCell},
	{s004, lines(63, 66, 1), "azure-stack-hci", CloudUSGov, firstCell},
	{s004, lines(72, 75, 1), "azure-stack-hci", CloudChina, firstCell},
	{s004, []int{45}, "azure-stack-hci-recommended", CloudPublic, wildcardOnly},
	{s004, lines(83, 96, 1), "azure-stack-hci-update", CloudPublic, firstCell},
	{s004, []int{100}, "azure-stack-hci-witness", CloudPublic, firstCell},
	{s004, lines(106, 114, 1), "azure-stack-hci-remote-support", CloudPublic, firstCell},
}

// jsonEntries reads seed 004's JSON allowlists (not valid JSON: the Notes
// use typographic quotes) between from and to: URL, Port and the cloud the
// Notes name in parentheses (none: every cloud, checked in each).
func jsonEntries(t *testing.T, text []string, from, to int) []mention {
	t.Helper()
	urlLine := regexp.MustCompile(`"URL": "([^"]+)"`)
	portLine := regexp.MustCompile(`"Port": "(\d+)"`)
	var out []mention
	for i := from - 1; i < to && i < len(text); i++ {
		um := urlLine.FindStringSubmatch(text[i])
		if um == nil {
			continue
		}
		pm := portLine.FindStringSubmatch(text[i+1])
		if pm == nil {
			t.Fatalf("%s line %d: no Port after URL", s004, i+2)
		}
		notes := text[i+2]
		var clouds []string
		if strings.Contains(notes, "Azure Public") {
			clouds = append(clouds, CloudPublic)
		}
		if strings.Contains(notes, "Azure Gov") {
			clouds = append(clouds, CloudUSGov)
		}
		if strings.Contains(notes, "Azure China") {
			clouds = append(clouds, CloudChina)
		}
		if clouds == nil {
			clouds = Clouds
		}
		for _, m := range hostsIn(um[1], "tcp/443") {
			ports := slices.Compact(slices.Sorted(slices.Values(append(m.ports, "tcp/"+pm[1]))))
			for _, cl := range clouds {
				out = append(out, mention{seed: s004, line: i + 1, host: m.host, ports: ports, cloud: cl})
			}
		}
	}
	return out
}

func readSeed(t *testing.T, name string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "seeds", name))
	if err != nil {
		t.Fatal(err)
	}
	if shared, err := os.ReadFile(filepath.Join(sharedSeeds, name)); err == nil && !bytes.Equal(shared, data) {
		t.Fatalf("testdata/seeds/%s differs from %s/%s: copy the new seed and update the catalog", name, sharedSeeds, name)
	}
	return strings.Split(string(data), "\n")
}

func TestCatalogCoversSeeds(t *testing.T) {
	cat, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	text := map[string][]string{}
	for _, s := range []string{s001, s002, s003, s004} {
		text[s] = readSeed(t, s)
	}
	type want struct {
		mention
		profile string
	}
	var wants []want
	for _, tb := range tables {
		for _, ln := range tb.lines {
			ms := tb.read(text[tb.seed][ln-1])
			if len(ms) == 0 {
				t.Errorf("%s line %d: the test found no host in %q; fix the table of lines", tb.seed, ln, text[tb.seed][ln-1])
			}
			for _, m := range ms {
				m.seed, m.line, m.cloud = tb.seed, ln, tb.cloud
				wants = append(wants, want{m, tb.profile})
			}
		}
	}
	for _, m := range jsonEntries(t, text[s004], 165, 221) {
		wants = append(wants, want{m, "azure-stack-hci"})
	}
	for _, m := range jsonEntries(t, text[s004], 240, 416) {
		wants = append(wants, want{m, "azure-stack-hci-recommended"})
	}
	if len(wants) < 150 {
		t.Fatalf("only %d mentions read from the seeds: the reader is broken", len(wants))
	}
	for _, w := range wants {
		items, err := cat.Items(w.profile, w.cloud)
		if err != nil {
			t.Errorf("%s: %v", w, err)
			continue
		}
		if !covered(items, w.mention) {
			t.Errorf("%s: not in profile %s with those ports for that cloud", w.mention, w.profile)
		}
	}
	// The placeholder tables (SCVMM and vCenter server "URL of the ...")
	// have no host to read: their profiles must take it as a parameter.
	for _, c := range []struct {
		line           int
		profile, param string
	}{
		{233, "azure-arc-scvmm", "scvmm_server"},
		{239, "azure-arc-vmware", "vcenter_server"},
	} {
		if !strings.Contains(text[s002][c.line-1], "URL of the") {
			t.Errorf("%s line %d changed: %q", s002, c.line, text[s002][c.line-1])
		}
		req, _, err := cat.AllParams(c.profile)
		if err != nil || !slices.Contains(req, c.param) {
			t.Errorf("%s line %d: profile %s does not need %s (%v, %v)", s002, c.line, c.profile, c.param, req, err)
		}
	}
	t.Logf("%d seed mentions checked", len(wants))
}

// covered reports whether some item has the host (or, for the seed's
// [myblobstorage] example, the narrowing template) with all the ports.
func covered(items []Item, m mention) bool {
	for _, it := range items {
		e := it.Entry
		hosts := e.Hosts
		if strings.HasPrefix(m.host, "[myblobstorage]") {
			hosts = []string{strings.Replace(e.Narrow, "<witness_storage_account>", "[myblobstorage]", 1)}
		}
		if !slices.Contains(hosts, m.host) {
			continue
		}
		if !slices.ContainsFunc(m.ports, func(p string) bool { return !slices.Contains(e.Ports, p) }) {
			return true
		}
	}
	return false
}
