package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/cluster"
	"github.com/fqdngate/fqdngate/internal/config"
	"github.com/fqdngate/fqdngate/internal/dnsproxy"
	"github.com/fqdngate/fqdngate/internal/enforce"
	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// hubConfig is a gateway whose devices may reach *.azure-devices.net on
// ports.
func hubConfig(ports string) string {
	return `mode: enforce
listen: {dns: ["192.0.2.1:53"]}
upstreams: ["198.51.100.53"]
clients:
  - name: devices
    cidrs: ["192.0.2.0/26"]
    rules:
      - name: hub
        fqdn: ["*.azure-devices.net"]
        ports: [` + ports + `]
`
}

// TestApplierJudgesByItsOwnPolicy: another node's record becomes an
// element here only as this node would have granted the answer itself:
// its client groups, its rules' ports, its private_answers.
func TestApplierJudgesByItsOwnPolicy(t *testing.T) {
	c, err := config.Parse("t.yaml", []byte(hubConfig(`"tcp/443", "tcp/8883"`)))
	if err != nil {
		t.Fatal(err)
	}
	led := ledger.New(ledger.Options{MaxPerName: 16, MaxEntries: 1000, MaxPerClient: 1000})
	fake := enforce.NewFake()
	h := dnsproxy.NewHandler(c.Derived.Policy, nil, led, fake, dnsproxy.Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	a := &applier{led: led, enf: fake, h: h, log: slog.New(slog.NewTextHandler(io.Discard, nil))}

	now := time.Now()
	exp := now.Add(2 * time.Minute).Truncate(time.Millisecond)
	device := netip.MustParseAddr("192.0.2.10")
	outsider := netip.MustParseAddr("192.0.2.200")
	cdn := netip.MustParseAddr("203.0.113.7")
	rec := func(client netip.Addr, name string, addr netip.Addr) cluster.Record {
		return cluster.Record{Node: "gw1", Client: client, Group: "devices", Name: name, Addr: addr,
			TTL: time.Minute, Learnt: now, Expires: exp}
	}
	tests := []struct {
		name string
		rec  cluster.Record
		want cluster.Verdict
	}{
		{"granted here too", rec(device, "hub1.azure-devices.net", cdn), cluster.Applied},
		{"a name this node denies", rec(device, "evil.example", cdn), cluster.Denied},
		{"a client in no group here", rec(outsider, "hub1.azure-devices.net", cdn), cluster.Denied},
		{"a private address, withheld here", rec(device, "hub2.azure-devices.net", netip.MustParseAddr("10.1.2.3")), cluster.Denied},
	}
	recs := make([]cluster.Record, len(tests))
	for i, tc := range tests {
		recs[i] = tc.rec
	}
	got := a.Apply(context.Background(), recs)
	for i, tc := range tests {
		if got[i] != tc.want {
			t.Errorf("%s: verdict %d, want %d", tc.name, got[i], tc.want)
		}
	}
	for _, port := range []string{"tcp/443", "tcp/8883"} {
		p, _ := policy.ParsePort(port)
		if !fake.Has(ledger.Elem{Client: device, Addr: cdn, Port: p}, now) {
			t.Errorf("no element for %s on %s", cdn, port)
		}
	}
	if len(fake.Elems) != 2 {
		t.Errorf("%d elements in the kernel, want the granted answer's 2: %v", len(fake.Elems), fake.Elems)
	}
	es := led.Lookup(cdn, device)
	if len(es) != 1 || es[0].Node != "gw1" || es[0].Group != "devices" || !es[0].Expires.Equal(exp) {
		t.Fatalf("ledger holds %+v, want one entry answered by gw1 until %v", es, exp)
	}

	// The kernel refusing the batch: nothing is recorded as applied.
	fake.Set(context.DeadlineExceeded, false)
	got = a.Apply(context.Background(), []cluster.Record{rec(device, "hub3.azure-devices.net", cdn)})
	if got[0] != cluster.Failed {
		t.Fatalf("verdict %d with the kernel failing, want Failed", got[0])
	}
}

// laterFake revokes at once what RevokeLater is given, and fails Allow
// with a hold timeout the first busy times, as a busy writer does.
type laterFake struct {
	*enforce.Fake
	busy int
}

func (f *laterFake) RevokeLater(elems []ledger.Elem) bool {
	_ = f.Revoke(context.Background(), elems)
	return true
}

func (f *laterFake) Allow(ctx context.Context, grants []enforce.Grant) error {
	if f.busy > 0 {
		f.busy--
		return fmt.Errorf("%w: no acknowledgement within 1s", enforce.ErrHoldTimeout)
	}
	return f.Fake.Allow(ctx, grants)
}

// TestApplierBatch: what one record of a batch evicts from the ledger is
// not taken from the kernel when a later record of the batch holds it,
// and a busy kernel writer is asked again rather than the batch lost.
func TestApplierBatch(t *testing.T) {
	c, err := config.Parse("t.yaml", []byte(hubConfig(`"tcp/443"`)))
	if err != nil {
		t.Fatal(err)
	}
	// One entry a client: each answer evicts the one before.
	led := ledger.New(ledger.Options{MaxPerName: 16, MaxEntries: 1000, MaxPerClient: 1})
	fake := &laterFake{Fake: enforce.NewFake()}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := dnsproxy.NewHandler(c.Derived.Policy, nil, led, fake, dnsproxy.Options{}, log, nil)
	a := &applier{led: led, enf: fake, h: h, log: log}

	now := time.Now()
	exp := now.Add(2 * time.Minute).Truncate(time.Millisecond)
	device := netip.MustParseAddr("192.0.2.10")
	y1, z := netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("203.0.113.8")
	rec := func(name string, addr netip.Addr) cluster.Record {
		return cluster.Record{Node: "gw1", Client: device, Group: "devices", Name: name, Addr: addr,
			TTL: time.Minute, Learnt: now, Expires: exp}
	}
	p443, _ := policy.ParsePort("tcp/443")
	elem := func(addr netip.Addr) ledger.Elem { return ledger.Elem{Client: device, Addr: addr, Port: p443} }

	if got := a.Apply(context.Background(), []cluster.Record{rec("a.azure-devices.net", y1)}); got[0] != cluster.Applied {
		t.Fatalf("first record: verdict %d", got[0])
	}
	// b evicts a (y1 no longer covered), c evicts b and covers y1 again.
	fake.busy = 2
	got := a.Apply(context.Background(), []cluster.Record{rec("b.azure-devices.net", z), rec("c.azure-devices.net", y1)})
	for i, v := range got {
		if v != cluster.Applied {
			t.Errorf("record %d: verdict %d with a busy writer, want Applied", i, v)
		}
	}
	if !fake.Has(elem(y1), now) {
		t.Errorf("%s was taken from the kernel though the ledger holds c.azure-devices.net for it: %v", y1, led.Lookup(y1, device))
	}
	if fake.Has(elem(z), now) {
		t.Errorf("%s is still in the kernel though its entry was evicted", z)
	}
}
