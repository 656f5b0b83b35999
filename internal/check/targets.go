package check

import (
	"github.com/fqdngate/fqdngate/internal/catalog"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// maxPortsPerRange bounds the ports probed of one range: tcp/5671-5672 is
// two probes, a wider range than this is probed on its first port only.
const maxPortsPerRange = 17

// ProfileTargets expands catalog profiles (with their includes, for the
// cloud, placeholders filled from values) into targets, one per port,
// each once. A profile's error (unknown, a missing parameter, nothing
// for the cloud) is returned as the catalog gives it.
func ProfileTargets(cat *catalog.Catalog, profiles []string, cloud string, values map[string]string) ([]Target, error) {
	var out []Target
	seen := map[Target]bool{}
	for _, p := range profiles {
		eps, err := cat.Resolve(p, cloud, values)
		if err != nil {
			return nil, err
		}
		for _, ep := range eps {
			for _, pr := range ep.Ports {
				for port := pr.Lo; ; port++ {
					t := Target{Profile: p, Host: ep.Pattern.Text, Proto: policy.ProtoName(pr.Proto), Port: port,
						Required: ep.Entry.Required(), Purpose: ep.Entry.Purpose}
					if !seen[t] {
						seen[t] = true
						out = append(out, t)
					}
					if port == pr.Hi || int(pr.Hi-pr.Lo) >= maxPortsPerRange {
						break
					}
				}
			}
		}
	}
	return out, nil
}
