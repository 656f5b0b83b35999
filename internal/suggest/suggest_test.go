package suggest

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/catalog"
	"github.com/fqdngate/fqdngate/internal/config"
	"github.com/fqdngate/fqdngate/internal/monitor"
)

func seen(names ...string) []monitor.NameSeen {
	var out []monitor.NameSeen
	t0 := time.Unix(1_800_000_000, 0)
	for i, n := range names {
		out = append(out, monitor.NameSeen{Name: n, Queries: 1, First: t0, Last: t0.Add(time.Duration(i) * time.Minute),
			ClientAddrs: []netip.Addr{netip.MustParseAddr("192.0.2.10")}})
	}
	return out
}

func TestBuild(t *testing.T) {
	cat, err := catalog.Default()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		names    []string
		profiles []string
		other    []string
	}{
		{"sphere device", []string{"prod.core.sphere.azure.net", "www.msftconnecttest.com", "prod.update.sphere.azure.net", "api.vendor.example"},
			[]string{"azure-sphere"}, []string{"api.vendor.example"}},
		{"one shared name proves no product", []string{"login.microsoftonline.com"}, nil, []string{"login.microsoftonline.com"}},
		{"sphere with ntp", []string{"prod.core.sphere.azure.net", "prod.device.core.sphere.azure.net", "time.sphere.azure.net", "prod.time.sphere.azure.net"},
			[]string{"azure-sphere", "azure-sphere-ntp"}, nil},
		{"nothing seen", nil, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := Build(seen(tc.names...), cat)
			var got []string
			for _, p := range s.Profiles {
				got = append(got, p.Profile)
			}
			if strings.Join(got, ",") != strings.Join(tc.profiles, ",") || strings.Join(s.Other, ",") != strings.Join(tc.other, ",") {
				t.Errorf("profiles %v other %v, want %v %v", got, s.Other, tc.profiles, tc.other)
			}
			var b bytes.Buffer
			if err := s.WriteConfig(&b, []string{"198.51.100.53"}); err != nil {
				t.Fatal(err)
			}
			// What suggest writes must be a valid configuration.
			if _, err := config.Parse("suggested.yaml", b.Bytes()); err != nil {
				t.Errorf("suggested config does not load: %v\n%s", err, b.String())
			}
		})
	}
}
