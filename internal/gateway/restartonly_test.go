package gateway

import (
	"slices"
	"testing"

	"github.com/fqdngate/fqdngate/internal/config"
)

// TestRestartOnly: a reload names the settings it does not apply, so that
// a changed cache_size or feeds section is not silently ignored.
func TestRestartOnly(t *testing.T) {
	base := func() *config.Config {
		return &config.Config{Mode: "enforce", CacheSize: config.DefaultCacheSize,
			Clients: []config.Client{{Name: "a", CIDRs: []string{"192.0.2.0/24"}}}}
	}
	tests := []struct {
		name   string
		change func(*config.Config)
		want   []string
	}{
		{"nothing", func(*config.Config) {}, nil},
		{"client groups are applied", func(c *config.Config) { c.Clients[0].CIDRs = []string{"198.51.100.0/24"} }, nil},
		{"cache_size", func(c *config.Config) { c.CacheSize = 10 }, []string{"cache_size"}},
		{"feeds", func(c *config.Config) { c.Feeds.Widen = true }, []string{"feeds"}},
		{"cluster added", func(c *config.Config) { c.Cluster = &config.Cluster{Name: "s", Node: "n", NATS: []string{"embedded"}} }, []string{"cluster"}},
		{"both", func(c *config.Config) { c.CacheSize = 0; c.MaxInflight = 7 }, []string{"max_inflight", "cache_size"}},
	}
	for _, tc := range tests {
		nc := base()
		tc.change(nc)
		if got := restartOnly(base(), nc); !slices.Equal(got, tc.want) {
			t.Errorf("%s: restartOnly = %q, want %q", tc.name, got, tc.want)
		}
	}
}
