package gateway

import (
	"github.com/fqdngate/fqdngate/internal/clientlimit"
	"github.com/fqdngate/fqdngate/internal/config"
)

// clientLimits is each client group's max_qps and max_inflight.
func clientLimits(c *config.Config) map[string]clientlimit.Limits {
	out := make(map[string]clientlimit.Limits, len(c.Clients))
	for _, cl := range c.Clients {
		out[cl.Name] = clientlimit.Limits{QPS: cl.MaxQPS, Inflight: cl.MaxInflight}
	}
	return out
}
