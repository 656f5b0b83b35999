package servicetags

import (
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	tests := []struct {
		file         string
		changeNumber int64
		tags         int
		check        func(t *testing.T, f *File)
	}{
		{
			file: "ServiceTags_Public_test.json", changeNumber: 342, tags: 6,
			check: func(t *testing.T, f *File) {
				hub := f.Tag("azureiothub.eastus") // case-insensitive
				if hub == nil || hub.Region != "eastus" || hub.RegionID != 32 || hub.SystemService != "AzureIoTHub" || hub.ChangeNumber != 7 {
					t.Fatalf("AzureIoTHub.EastUS = %+v", hub)
				}
				want := []netip.Prefix{netip.MustParsePrefix("203.0.113.64/28"), netip.MustParsePrefix("2001:db8:1:4::/64")}
				if !slices.Equal(hub.Prefixes, want) {
					t.Errorf("prefixes %v, want %v", hub.Prefixes, want)
				}
				if !slices.Equal(hub.NetworkFeatures, []string{"API", "NSG", "UDR", "FW"}) {
					t.Errorf("networkFeatures %v", hub.NetworkFeatures)
				}
				if f.Tag("AzureCloud.eastus").NetworkFeatures != nil {
					t.Error("null networkFeatures should be nil")
				}
				if f.Tag("AzureResourceManager").NetworkFeatures != nil {
					t.Error("absent networkFeatures should be nil")
				}
				odd := f.Tag("Storage.EastUS2 (Preview) ünïcode-Ñame")
				if odd == nil || len(odd.Prefixes) != 0 || odd.ID != "Storage.EastUS2-odd" {
					t.Errorf("odd name: %+v", odd)
				}
			},
		},
		{
			file: "discovery_api.json", changeNumber: 63, tags: 2,
			check: func(t *testing.T, f *File) {
				aad := f.Tag("AzureActiveDirectory")
				if aad == nil || aad.ChangeNumber != 9 || len(aad.Prefixes) != 2 || aad.NetworkFeatures != nil {
					t.Fatalf("AzureActiveDirectory = %+v", aad)
				}
				if got := f.Tag("AzureTrafficManager").Addresses(); got != 1 {
					t.Errorf("AzureTrafficManager holds %d addresses, want 1", got)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := Load(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if f.ChangeNumber != tt.changeNumber || len(f.Tags) != tt.tags || f.Cloud != "Public" {
				t.Fatalf("changeNumber %d, %d tags, cloud %q; want %d, %d, Public", f.ChangeNumber, len(f.Tags), f.Cloud, tt.changeNumber, tt.tags)
			}
			tt.check(t, f)
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		data string
		want string // the whole message up to ErrFormat's text
	}{
		{"prefix", `{"values":[{"name":"A","properties":{"addressPrefixes":["192.0.2.0/24"]}},{"name":"B","properties":{"addressPrefixes":["198.51.100.0/24","192.0.2.0/33"]}}]}`,
			`t.json: values[1].properties.addressPrefixes[1]: "192.0.2.0/33" is not a prefix`},
		{"bare address", `{"values":[{"name":"A","properties":{"addressPrefixes":["192.0.2.1"]}}]}`,
			`t.json: values[0].properties.addressPrefixes[0]: "192.0.2.1" is not a prefix`},
		{"prefix not a string", `{"values":[{"name":"A","properties":{"addressPrefixes":[24]}}]}`,
			`t.json: values[0].properties.addressPrefixes[0]: 24 is not a string`},
		{"change number", `{"changeNumber":"abc","values":[]}`,
			`t.json: changeNumber: "abc" is not a number`},
		{"tag change number", `{"values":[{"name":"A","properties":{"changeNumber":true}}]}`,
			`t.json: values[0].properties.changeNumber: true is neither a number nor a string of one`},
		{"region type", `{"values":[{"name":"A","properties":{"region":7}}]}`,
			`t.json: values[0].properties.region: a JSON number where a string belongs`},
		{"value type", `{"values":[{"name":"A","properties":{}}, 7]}`,
			`t.json: values[1]: a JSON number where an object belongs`},
		{"no values", `{"changeNumber":1}`, `t.json: no "values" array`},
		{"no name", `{"values":[{"id":"x","properties":{}}]}`, `t.json: values[0].name: missing or empty`},
		{"no properties", `{"values":[{"name":"A"}]}`, `t.json: values[0].properties: missing (tag "A")`},
		{"syntax", "{\n  \"values\": [\n    {\"name\": \"A\",, }\n  ]\n}", `t.json: line 3, column 19: invalid character ',' looking for beginning of object key string`},
		{"truncated", `{"values": [{"name": "A"`, `t.json: the JSON ends too early (a truncated download?)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.json", []byte(tt.data))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrFormat) {
				t.Errorf("%v does not wrap ErrFormat", err)
			}
			if got := strings.TrimSuffix(err.Error(), ": "+ErrFormat.Error()); got != tt.want {
				t.Errorf("error\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestLoadFiles(t *testing.T) {
	tests := []struct{ file, want string }{
		{"broken_prefix.json", `broken_prefix.json: values[0].properties.addressPrefixes[3]: "192.0.2.0/33" is not a prefix`},
		{"truncated.json", `truncated.json: the JSON ends too early`},
		{"missing.json", `missing.json: no such file`},
	}
	for _, tt := range tests {
		_, err := Load(filepath.Join("testdata", tt.file))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Load(%s) = %v, want an error containing %q", tt.file, err, tt.want)
		}
	}
}

func TestIndexLookup(t *testing.T) {
	f, err := Load("testdata/ServiceTags_Public_test.json")
	if err != nil {
		t.Fatal(err)
	}
	x := NewIndex(f)
	tests := []struct {
		addr   string
		prefix string
		tags   []string // most specific
		all    []string // every containing tag, broadest first
	}{
		{"203.0.113.70", "203.0.113.64/28", []string{"AzureIoTHub.EastUS", "AzureResourceManager"}, []string{"AzureCloud", "AzureCloud.eastus", "AzureIoTHub.EastUS", "AzureResourceManager"}},
		{"203.0.113.7", "203.0.113.0/24", []string{"AzureCloud", "AzureCloud.eastus"}, []string{"AzureCloud", "AzureCloud.eastus"}},
		{"198.51.100.130", "198.51.100.128/26", []string{"AzureFrontDoor.FirstParty"}, []string{"AzureCloud", "AzureFrontDoor.FirstParty"}},
		{"::ffff:198.51.100.33", "198.51.100.32/27", []string{"AzureResourceManager"}, []string{"AzureCloud", "AzureResourceManager"}},
		{"2001:db8:1:4::17", "2001:db8:1:4::/64", []string{"AzureIoTHub.EastUS"}, []string{"AzureCloud", "AzureCloud.eastus", "AzureIoTHub.EastUS"}},
		{"2001:db8:8000::1", "", nil, nil}, // outside 2001:db8::/40
		{"192.0.2.1", "", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			a := netip.MustParseAddr(tt.addr)
			m, ok := x.Lookup(a)
			if ok != (tt.prefix != "") || ok != x.Contains(a) {
				t.Fatalf("Lookup ok=%v Contains=%v, want %v", ok, x.Contains(a), tt.prefix != "")
			}
			if !ok {
				return
			}
			if m.Prefix.String() != tt.prefix {
				t.Errorf("prefix %s, want %s", m.Prefix, tt.prefix)
			}
			if got := names(m.Tags); !slices.Equal(got, tt.tags) {
				t.Errorf("tags %v, want %v", got, tt.tags)
			}
			if got := names(x.All(a)); !slices.Equal(got, tt.all) {
				t.Errorf("all %v, want %v", got, tt.all)
			}
		})
	}
	if x.Prefixes() != 8 {
		t.Errorf("%d distinct prefixes, want 8", x.Prefixes())
	}
}

func names(ts []*Tag) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Name)
	}
	return out
}

func TestBreadthOf(t *testing.T) {
	tests := []struct {
		prefixes []string
		want     Breadth
		text     string
	}{
		{nil, Breadth{}, "0 addresses"},
		{[]string{"192.0.2.0/24", "198.51.100.0/16"}, Breadth{V4: 65536 + 256}, "65,792 addresses"},
		{[]string{"2001:db8::/64", "2001:db8::1/128", "2001:db8:0:1::/120"}, Breadth{V6: 2}, "2 IPv6 /64s"},
		{[]string{"2001:db8::/64"}, Breadth{V6: 1}, "1 IPv6 /64"},
		{[]string{"192.0.2.1/32"}, Breadth{V4: 1}, "1 address"},
		{[]string{"2001:db8::/48", "192.0.2.1/32"}, Breadth{V4: 1, V6: 65536}, "1 IPv4 address and 65,536 IPv6 /64s"},
		{[]string{"::/0"}, Breadth{V6: 1<<64 - 1}, "2^64 or more IPv6 /64s"},
	}
	for _, tt := range tests {
		var ps []netip.Prefix
		for _, s := range tt.prefixes {
			ps = append(ps, netip.MustParsePrefix(s))
		}
		got := BreadthOf(ps)
		if got != tt.want || got.String() != tt.text {
			t.Errorf("BreadthOf(%v) = %+v %q, want %+v %q", tt.prefixes, got, got, tt.want, tt.text)
		}
	}
}

func TestCountAddresses(t *testing.T) {
	tests := []struct {
		prefixes []string
		want     uint64
	}{
		{nil, 0},
		{[]string{"192.0.2.0/24"}, 256},
		{[]string{"192.0.2.0/24", "192.0.2.64/26", "192.0.2.7/32"}, 256},
		{[]string{"192.0.2.0/25", "192.0.2.128/25", "198.51.100.1/32"}, 257},
		{[]string{"2001:db8::/120", "192.0.2.0/31"}, 258},
		{[]string{"2001:db8::/64"}, 1<<64 - 1},
		{[]string{"2001:db8::/32", "2001:db8:1::/48"}, 1<<64 - 1},
	}
	for _, tt := range tests {
		var ps []netip.Prefix
		for _, s := range tt.prefixes {
			ps = append(ps, netip.MustParsePrefix(s))
		}
		if got := CountAddresses(ps); got != tt.want {
			t.Errorf("CountAddresses(%v) = %d, want %d", tt.prefixes, got, tt.want)
		}
	}
}
