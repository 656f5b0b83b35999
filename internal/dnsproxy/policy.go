package dnsproxy

import "github.com/fqdngate/fqdngate/internal/policy"

// Policy returns the policy queries are matched against now.
func (h *Handler) Policy() *policy.Policy { return h.policy.Load() }
