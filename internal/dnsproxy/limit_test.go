package dnsproxy

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/clientlimit"
	"github.com/fqdngate/fqdngate/internal/enforce"
	"github.com/fqdngate/fqdngate/internal/ledger"
)

type recordingObserver struct {
	mu  sync.Mutex
	out []Outcome
}

func (r *recordingObserver) Query(o Outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.out = append(r.out, o)
}

// TestRateLimitedRefusedWithEDE: past its max_qps a client gets REFUSED
// with the Extended DNS Error "rate limited", nothing is asked upstream,
// the outcome says rate-limited; another client of the group is not
// affected.
func TestRateLimitedRefusedWithEDE(t *testing.T) {
	lim := clientlimit.New(map[string]clientlimit.Limits{"devices": {QPS: 2}})
	e := newEnv(t, func(o *Options) { o.Limits = lim })
	obs := &recordingObserver{}
	e.h.SetObserver(obs)
	devB := netip.MustParseAddr("192.0.2.11")
	for i, c := range []struct {
		client netip.Addr
		rcode  int
	}{
		{devA, dns.RcodeSuccess}, {devA, dns.RcodeSuccess}, {devA, dns.RcodeRefused}, {devB, dns.RcodeSuccess},
	} {
		resp := e.h.Resolve(context.Background(), c.client, query("prod.update.sphere.azure.net.", dns.TypeA, true))
		if resp.Rcode != c.rcode {
			t.Fatalf("query %d from %s: %s, want %s", i, c.client, dns.RcodeToString[resp.Rcode], dns.RcodeToString[c.rcode])
		}
		if c.rcode != dns.RcodeRefused {
			continue
		}
		opt := resp.IsEdns0()
		if opt == nil || len(opt.Option) != 1 {
			t.Fatalf("refusal without an Extended DNS Error: %v", resp)
		}
		if x := opt.Option[0].(*dns.EDNS0_EDE); x.InfoCode != dns.ExtendedErrorCodeProhibited || x.ExtraText != "fqdngate: rate limited (qps)" {
			t.Fatalf("EDE %d %q", x.InfoCode, x.ExtraText)
		}
		if d := obs.out[len(obs.out)-1]; d.Decision != DecisionRateLimited || d.Group != "devices" {
			t.Fatalf("outcome %+v", d)
		}
	}
	if n := e.up.askedFor("prod.update.sphere.azure.net."); n != 3 {
		t.Fatalf("upstream asked %d times, want 3 (not for the refused query)", n)
	}
	if n := e.h.Stats().RateLimited.Load(); n != 1 {
		t.Fatalf("RateLimited %d", n)
	}
	if got := lim.Refused()["devices"][clientlimit.LimitQPS]; got != 1 {
		t.Fatalf("limiter counted %d", got)
	}
}

// stallingRevoker's Revoke blocks until its context ends; with queue it
// is an enforcer whose RevokeLater finds the queue full.
type stallingRevoker struct {
	*enforce.Fake
	t       *testing.T
	revoked int
}

func (s *stallingRevoker) Revoke(ctx context.Context, elems []ledger.Elem) error {
	if _, ok := ctx.Deadline(); !ok {
		s.t.Error("Revoke of evicted elements without a bound on the wait")
	}
	s.revoked += len(elems)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(10 * time.Second): // only if the wait has no bound
		return nil
	}
}

type fullQueue struct {
	stallingRevoker
	later int
}

func (f *fullQueue) RevokeLater(elems []ledger.Elem) bool {
	f.later += len(elems)
	return false
}

// TestEvictionNeverHoldsTheQuery: the removal of evicted elements is
// queued, or waited for with a bound; either way the answer is released
// and what was not removed is counted.
func TestEvictionNeverHoldsTheQuery(t *testing.T) {
	for _, c := range []struct {
		name  string
		enf   func(*testing.T) enforce.Enforcer
		check func(t *testing.T, enf enforce.Enforcer)
	}{
		{"a kernel that does not answer", func(t *testing.T) enforce.Enforcer {
			return &stallingRevoker{Fake: enforce.NewFake(), t: t}
		}, func(t *testing.T, enf enforce.Enforcer) {
			if n := enf.(*stallingRevoker).revoked; n != 2 {
				t.Errorf("Revoke asked for %d elements, want 2", n)
			}
		}},
		{"a full queue", func(t *testing.T) enforce.Enforcer {
			return &fullQueue{stallingRevoker: stallingRevoker{Fake: enforce.NewFake(), t: t}}
		}, func(t *testing.T, enf enforce.Enforcer) {
			f := enf.(*fullQueue)
			if f.later != 2 || f.revoked != 0 {
				t.Errorf("queued %d, waited for %d; want 2 queued, none waited for", f.later, f.revoked)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			enf := c.enf(t)
			led := ledger.New(ledger.Options{MaxEntries: 2})
			o := Options{DenyRcode: dns.RcodeNameError, MinTTL: time.Minute, MaxTTL: time.Hour}
			h := NewHandler(testPolicy(t), &fakeUpstream{records: cdnRecords()}, led, enf, o,
				slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return t0 })
			// Two addresses on two ports fill the ledger; the next answer evicts
			// one of them: two elements.
			if r := h.Resolve(context.Background(), devA, query("prod.update.sphere.azure.net.", dns.TypeA, false)); r.Rcode != dns.RcodeSuccess {
				t.Fatal(r)
			}
			r := h.Resolve(context.Background(), devA, query("long.svc.example.com.", dns.TypeA, false))
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Fatalf("the evicting answer was not released: %v", r)
			}
			if n := h.Stats().RevokeDropped.Load(); n != 2 {
				t.Errorf("RevokeDropped %d, want 2", n)
			}
			c.check(t, enf)
		})
	}
}
