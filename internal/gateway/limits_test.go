package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/clientlimit"
	"github.com/fqdngate/fqdngate/internal/config"
	"github.com/fqdngate/fqdngate/internal/dnsproxy"
	"github.com/fqdngate/fqdngate/internal/enforce"
	"github.com/fqdngate/fqdngate/internal/ledger"
)

func limitsConfig(t *testing.T, group string) *config.Config {
	t.Helper()
	c, err := config.Parse("t.yaml", []byte(`mode: enforce
upstreams: ["198.51.100.53"]
enforcer: {backend: none}
clients:
  - name: devices
    cidrs: ["192.0.2.0/24"]
`+group+`    rules:
      - {name: hub, fqdn: [hub.example.com], ports: [tcp/443]}
`))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestReloadAppliesClientLimits: a group's max_qps and max_inflight are
// in force from the next query after a reload.
func TestReloadAppliesClientLimits(t *testing.T) {
	old, nc := limitsConfig(t, "    max_qps: 1\n"), limitsConfig(t, "    max_qps: 0\n    max_inflight: 1\n")
	lim := clientlimit.New(clientLimits(old))
	led := ledger.New(ledger.Options{})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := dnsproxy.NewHandler(old.Derived.Policy, nil, led, enforce.None{}, dnsproxy.Options{Limits: lim}, log, nil)
	r := &reloader{cfg: old, load: func() (*config.Config, error) { return nc, nil }, led: led, enf: enforce.None{}, h: h, log: log, limits: lim}
	dev, now := netip.MustParseAddr("192.0.2.10"), time.Now()
	if _, l := lim.Admit(now, dev, "devices"); l != "" {
		t.Fatalf("first query refused: %s", l)
	}
	if _, l := lim.Admit(now, dev, "devices"); l != clientlimit.LimitQPS {
		t.Fatalf("second query at max_qps 1: %q", l)
	}
	if err := r.reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	tk, l := lim.Admit(now, dev, "devices")
	if l != "" {
		t.Fatalf("after the reload (no max_qps): refused %s", l)
	}
	if _, l := lim.Admit(now, dev, "devices"); l != clientlimit.LimitInflight {
		t.Fatalf("after the reload (max_inflight 1), a second query in flight: %q", l)
	}
	lim.Done(tk)
}
