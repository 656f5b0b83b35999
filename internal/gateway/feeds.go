package gateway

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/fqdngate/fqdngate/internal/config"
	"github.com/fqdngate/fqdngate/internal/dnsproxy"
	"github.com/fqdngate/fqdngate/internal/feeds"
	"github.com/fqdngate/fqdngate/internal/ledger"
)

// maxSecretFile bounds what is read of a token or key file.
const maxSecretFile = 4096

// readSecret reads a token or key file: its first line, trimmed.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err)
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("secret file %s: longer than %d bytes", path, maxSecretFile)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if line = strings.TrimSpace(line); line == "" {
		return "", fmt.Errorf("secret file %s: empty", path)
	}
	return line, nil
}

// pullFeeds builds the /feeds/ handler; nil when no token is configured
// (then no feed is served: they list what devices reach).
func pullFeeds(c *config.Config, led *ledger.Ledger, h *dnsproxy.Handler, fm *feeds.Metrics, log *slog.Logger) (http.Handler, error) {
	if len(c.Feeds.Tokens) == 0 {
		return nil, nil
	}
	toks := make([]feeds.Token, 0, len(c.Feeds.Tokens))
	for i, t := range c.Feeds.Tokens {
		s, err := readSecret(t.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("feeds.tokens[%d] (%s): %w", i, t.Name, err)
		}
		toks = append(toks, feeds.Token{Name: t.Name, Secret: s, Feeds: t.Feeds, Clients: t.Clients})
	}
	return feeds.NewPull(feeds.PullOptions{Ledger: led, Policy: h.Policy, Tokens: toks, Widen: c.Feeds.Widen,
		Metrics: fm, Log: log.With("part", "feeds")}), nil
}
