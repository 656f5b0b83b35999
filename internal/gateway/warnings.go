package gateway

import (
	"log/slog"

	"github.com/fqdngate/fqdngate/internal/config"
)

// logWarnings logs what validation found dangerous but valid
// (config.Derived.Warnings), at start and at every reload, so that a
// journal shows it next to what the gateway then does.
func logWarnings(log *slog.Logger, c *config.Config) {
	for _, w := range c.Derived.Warnings {
		log.Warn("configuration", "warning", w.Error())
	}
}
