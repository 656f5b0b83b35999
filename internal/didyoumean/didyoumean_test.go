package didyoumean

import (
	"slices"
	"strconv"
	"testing"
)

func TestDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"table", "table", 0},
		{"tabel", "table", 1}, // swapped neighbours: one edit, not two
		{"min_tll", "min_ttl", 1},
		{"upstream", "upstreams", 1},
		{"cidr", "cidrs", 1},
		{"azure-spere", "azure-sphere", 1},
		{"kitten", "sitting", 3},
		{"ca", "abc", 3}, // OSA, not full Damerau: no edit of a transposed pair
	}
	for _, tc := range tests {
		if got := Distance(tc.a, tc.b); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := Distance(tc.b, tc.a); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d, want %d (symmetric)", tc.b, tc.a, got, tc.want)
		}
	}
}

func TestNearest(t *testing.T) {
	enforcer := []string{"backend", "table", "hook", "scope", "min_ttl", "max_ttl", "grace", "max_addrs_per_name",
		"max_entries", "max_entries_per_client", "hold", "gc_interval", "nflog_group", "mark", "static_max_addresses"}
	profiles := []string{"azure-sphere", "azure-sphere-ntp", "azure-iot-hub", "azure-arc-servers", "azure-arc-k8s"}
	tests := []struct {
		s          string
		candidates []string
		want       []string
	}{
		{"tabel", enforcer, []string{"table"}},
		{"min_tll", enforcer, []string{"min_ttl"}},
		{"Table", enforcer, []string{"table"}},                                          // case only
		{"max_tl", enforcer, []string{"max_ttl"}},                                       // one insertion; min_ttl needs two edits
		{"rule_x", []string{"rule_a", "rules", "rule_b"}, []string{"rule_a", "rule_b"}}, // a tie names both
		{"hool", enforcer, []string{"hook"}},
		{"max_entries_per", enforcer, []string{"max_entries_per_client"}},
		{"backends", enforcer, []string{"backend"}},
		{"table", enforcer, nil}, // itself
		{"zzz", enforcer, nil},
		{"verbose", enforcer, nil},
		{"azure-spere", profiles, []string{"azure-sphere"}},
		{"azure-sphere-ntp2", profiles, []string{"azure-sphere-ntp"}},
		{"azure-arc", profiles, []string{"azure-arc-servers", "azure-arc-k8s"}}, // a beginning
		{"azure", profiles, nil},                                                // the beginning of too many, and far from all
	}
	for _, tc := range tests {
		if got := Nearest(tc.s, tc.candidates); !slices.Equal(got, tc.want) {
			t.Errorf("Nearest(%q) = %q, want %q", tc.s, got, tc.want)
		}
	}
}

func TestPhrase(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"a"}, `did you mean "a"?`},
		{[]string{"a", "b"}, `did you mean "a" or "b"?`},
		{[]string{"a", "b", "c"}, `did you mean "a", "b" or "c"?`},
	}
	for _, tc := range tests {
		if got := Phrase(tc.in, strconv.Quote); got != tc.want {
			t.Errorf("Phrase(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
