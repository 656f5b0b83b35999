package gateway

import (
	"context"
	"crypto/x509"
	"fmt"
	"github.com/fqdngate/fqdngate/internal/secret"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/fqdngate/fqdngate/internal/config"
	"github.com/fqdngate/fqdngate/internal/dnsproxy"
	"github.com/fqdngate/fqdngate/internal/enforce"
	"github.com/fqdngate/fqdngate/internal/feeds"
	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// readSecret reads a feed token or a firewall's API key: a file with the
// checks of every secret fqdngate reads (internal/secret: a regular file
// that others cannot read, one line of 16 to 4096 printable bytes).
func readSecret(path string) (string, error) {
	b, err := secret.ReadToken(path)
	if err != nil {
		return "", fmt.Errorf("secret file: %w", err)
	}
	return string(b), nil
}

// pullFeeds builds the /feeds/ handler; nil when no token is configured
// (then no feed is served: they list what devices reach).
func pullFeeds(c *config.Config, led *ledger.Ledger, h *dnsproxy.Handler, fm *feeds.Metrics, log *slog.Logger) (http.Handler, error) {
	if len(c.Feeds.Tokens) == 0 {
		return nil, nil
	}
	toks := make([]feeds.Token, 0, len(c.Feeds.Tokens))
	seen := map[string]string{}
	for i, t := range c.Feeds.Tokens {
		s, err := readSecret(t.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("feeds.tokens[%d] (%s): %w", i, t.Name, err)
		}
		// One secret, one token: otherwise which groups it may read
		// would depend on the order of the list.
		if other, dup := seen[s]; dup {
			return nil, fmt.Errorf("feeds.tokens[%d] (%s): the same token as %s", i, t.Name, other)
		}
		seen[s] = t.Name
		toks = append(toks, feeds.Token{Name: t.Name, Secret: s, Feeds: t.Feeds, Clients: t.Clients})
	}
	return feeds.NewPull(feeds.PullOptions{Ledger: led, Policy: h.Policy, Tokens: toks, Widen: c.Feeds.Widen,
		Metrics: fm, Log: log.With("part", "feeds")}), nil
}

// pushTargets builds the feeds.push targets; pol is read at each resync.
func pushTargets(c *config.Config, led *ledger.Ledger, pol func() *policy.Policy, fm *feeds.Metrics, log *slog.Logger) ([]*feeds.Pusher, error) {
	var out []*feeds.Pusher
	for i, t := range c.Feeds.Push {
		key, err := readSecret(t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("feeds.push[%d]: %w", i, err)
		}
		var roots *x509.CertPool
		if t.CAFile != "" {
			pem, err := os.ReadFile(t.CAFile)
			if err != nil {
				return nil, fmt.Errorf("feeds.push[%d]: read ca_file: %w", i, err)
			}
			roots = x509.NewCertPool()
			if !roots.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("feeds.push[%d]: ca_file %s: no PEM certificate", i, t.CAFile)
			}
		}
		tag := t.Tag
		if t.Type == "fortigate" {
			tag = t.Name
		}
		p, err := feeds.NewPusher(feeds.PushOptions{Type: t.Type, URL: t.URL, Key: key, RootCAs: roots, Tag: tag,
			BatchWait: time.Duration(t.BatchMS) * time.Millisecond, BatchMax: t.BatchMax, Hold: t.Hold,
			Label: fmt.Sprintf("%s-%d", t.Type, i), Ledger: led, Policy: pol, Metrics: fm, Log: log.With("part", "push")})
		if err != nil {
			return nil, fmt.Errorf("feeds.push[%d]: %w", i, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// withPush is the enforcer the handler gets: the kernel's, wrapped to
// wait for the firewalls that hold.
func withPush(enf enforce.Enforcer, targets []*feeds.Pusher, hold time.Duration) enforce.Enforcer {
	for _, t := range targets {
		if t.Holds() {
			return feeds.NewHold(enf, targets, hold)
		}
	}
	return enf
}

// runPush runs the targets until ctx ends; the returned func waits for them.
func runPush(ctx context.Context, targets []*feeds.Pusher) (wait func()) {
	var wg sync.WaitGroup
	for _, t := range targets {
		wg.Go(func() { t.Run(ctx) })
	}
	return wg.Wait
}
