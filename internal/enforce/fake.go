package enforce

import (
	"context"
	"sync"
	"time"

	"github.com/fqdngate/fqdngate/internal/ledger"
)

// Fake is an in-memory Enforcer for tests. It keeps what a kernel set
// would hold and can be told to fail or to stall.
type Fake struct {
	mu sync.Mutex
	// Elems maps each element to its expiry.
	Elems map[ledger.Elem]time.Time
	// Batches counts Allow calls that reached the "kernel".
	Batches int
	// Err, when set, fails every Allow.
	Err error
	// Stall, when set, blocks Allow until the context ends or, when Hold
	// is set, for Hold, as the nftables enforcer's hold budget would.
	Stall bool
	// Hold is the hold budget (enforce.WithHold) that ends a stall;
	// DefaultHold in a new Fake.
	Hold time.Duration
}

// NewFake returns an empty Fake.
func NewFake() *Fake { return &Fake{Elems: make(map[ledger.Elem]time.Time), Hold: DefaultHold} }

func (f *Fake) Allow(ctx context.Context, grants []Grant) error {
	f.mu.Lock()
	stall, err, hold := f.Stall, f.Err, f.Hold
	f.mu.Unlock()
	if stall {
		var expired <-chan time.Time
		if hold > 0 {
			expired = time.After(hold)
		}
		select {
		case <-ctx.Done():
		case <-expired:
		}
		return ErrHoldTimeout
	}
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Batches++
	for _, g := range grants {
		if g.Expires.After(f.Elems[g.Elem]) {
			f.Elems[g.Elem] = g.Expires
		}
	}
	return nil
}

func (f *Fake) Revoke(_ context.Context, elems []ledger.Elem) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range elems {
		delete(f.Elems, e)
	}
	return nil
}

// Has reports whether e is held at now.
func (f *Fake) Has(e ledger.Elem, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	exp, ok := f.Elems[e]
	return ok && now.Before(exp)
}

// Set changes the failure behaviour under the lock.
func (f *Fake) Set(err error, stall bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Err, f.Stall = err, stall
}

func (f *Fake) Counters() (Counters, error) { return Counters{}, nil }
func (f *Fake) Close() error                { return nil }
