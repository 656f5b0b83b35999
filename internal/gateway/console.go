package gateway

import (
	"log/slog"
	"sync/atomic"

	"github.com/fqdngate/fqdngate/internal/api"
	"github.com/fqdngate/fqdngate/internal/config"
)

// consoleView is the policy the console shows. The reloader replaces it
// on Run's loop while the API reads it, hence the atomic pointer.
type consoleView struct {
	p atomic.Pointer[api.PolicyView]
}

func newConsoleView(c *config.Config) *consoleView {
	v := &consoleView{}
	v.set(c)
	return v
}

func (v *consoleView) set(c *config.Config) {
	profiles := make(map[string][]string, len(c.Clients))
	for _, cl := range c.Clients {
		profiles[cl.Name] = append([]string(nil), cl.Profiles...)
	}
	v.p.Store(&api.PolicyView{Policy: c.Derived.Policy, Profiles: profiles})
}

func (v *consoleView) get() api.PolicyView { return *v.p.Load() }

// reloadSecurity re-reads the API token and certificate on a reload; a
// bad file keeps the ones in force, so a typo does not lock anyone out
// nor open anything.
func reloadSecurity(sec *api.Security, log *slog.Logger) {
	if err := sec.Reload(); err != nil {
		log.Error("api token or certificate not reloaded; the ones in force stay", "err", err)
	}
}
