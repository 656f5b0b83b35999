package enforce

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/policy"
)

// stubWriter stands in for the writer goroutine: it answers every
// request with err, or leaves them unanswered when stuck.
func stubWriter(n *NFT, err error, stuck bool) {
	for {
		select {
		case r := <-n.reqs:
			if !stuck {
				r.result <- err
			}
		case <-n.done:
			return
		}
	}
}

// TestHoldBudget: Allow waits for the writer's result, at most the hold
// budget, and says why it gave up; a timer it reuses from an answer that
// timed out must not end a later wait early.
func TestHoldBudget(t *testing.T) {
	grant := []Grant{{Elem: ledger.Elem{Addr: netip.MustParseAddr("203.0.113.7"), Port: policy.PortRange{Proto: 6, Lo: 443, Hi: 443}},
		Expires: time.Unix(2e9, 0)}}
	kernelSays := errors.New("netlink: EPERM")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, c := range []struct {
		name    string
		hold    time.Duration
		ctx     context.Context
		queue   int // 0: nothing can be queued
		writer  func(*NFT)
		closed  bool
		want    error  // errors.Is
		wantMsg string // in the error
		waitAll bool   // the whole budget passed first
	}{
		{name: "acknowledged", hold: time.Second, queue: 1, writer: func(n *NFT) { stubWriter(n, nil, false) }},
		{name: "kernel error passed on", hold: time.Second, queue: 1, writer: func(n *NFT) { stubWriter(n, kernelSays, false) }, want: kernelSays},
		{name: "no acknowledgement within the budget", hold: 30 * time.Millisecond, queue: 1, writer: func(n *NFT) { stubWriter(n, nil, true) },
			want: ErrHoldTimeout, wantMsg: "no acknowledgement within 30ms", waitAll: true},
		{name: "queue full for the whole budget", hold: 30 * time.Millisecond, want: ErrHoldTimeout, wantMsg: "queue full after 30ms", waitAll: true},
		{name: "caller gives up, no budget", ctx: cancelled, queue: 1, want: context.Canceled},
		{name: "closed", hold: time.Second, queue: 1, closed: true, want: ErrClosed},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := &NFT{hold: c.hold, reqs: make(chan *request, c.queue), done: make(chan struct{})}
			defer func() {
				if !c.closed {
					close(n.done)
				}
			}()
			if c.closed {
				close(n.done)
			}
			if c.writer != nil {
				go c.writer(n)
			}
			ctx := c.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			start := time.Now()
			err := allowOrStuck(t, n, ctx, grant)
			if took := time.Since(start); c.waitAll && took < c.hold {
				t.Errorf("gave up after %s, before the budget of %s", took, c.hold)
			}
			switch {
			case c.want == nil && err != nil:
				t.Fatalf("Allow: %v, want nil", err)
			case c.want != nil && !errors.Is(err, c.want):
				t.Fatalf("Allow: %v, want %v", err, c.want)
			}
			if c.wantMsg != "" && (err == nil || !strings.Contains(err.Error(), c.wantMsg)) {
				t.Fatalf("Allow: %v, want it to say %q", err, c.wantMsg)
			}
			if errors.Is(c.want, context.Canceled) && !errors.Is(err, ErrHoldTimeout) {
				t.Fatalf("Allow: %v, want ErrHoldTimeout too", err)
			}
		})
	}

	t.Run("a reused timer does not fire early", func(t *testing.T) {
		n := &NFT{hold: 10 * time.Millisecond, reqs: make(chan *request, 1), done: make(chan struct{})}
		defer close(n.done)
		stuck := make(chan bool, 1)
		go func() {
			for {
				select {
				case r := <-n.reqs:
					if !<-stuck {
						r.result <- nil
					}
				case <-n.done:
					return
				}
			}
		}()
		// Timers that fired (and were read), then timers stopped early,
		// go back to the pool; none may end a later wait.
		for range 3 {
			stuck <- true
			if err := allowOrStuck(t, n, context.Background(), grant); !errors.Is(err, ErrHoldTimeout) {
				t.Fatalf("stuck writer: %v, want ErrHoldTimeout", err)
			}
		}
		n.hold = 5 * time.Second // a stale timer fires at once; a slow test machine takes long
		for i := range 200 {
			stuck <- false
			if err := allowOrStuck(t, n, context.Background(), grant); err != nil {
				t.Fatalf("answer %d: %v, want nil", i, err)
			}
		}
	})
}

// allowOrStuck calls Allow and fails the test when it has not returned
// after 10s, so that a budget that does not end the wait fails rather
// than hangs the test.
func allowOrStuck(t *testing.T, n *NFT, ctx context.Context, grants []Grant) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- n.Allow(ctx, grants) }()
	select {
	case err := <-errc:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Allow still waits after 10s")
		return nil
	}
}

// TestUnderLoad checks when the writer waits for the answers behind a
// request: a lone answer at a low rate must be committed at once, or it
// waits behind other queries' work.
func TestUnderLoad(t *testing.T) {
	for _, c := range []struct {
		name string
		gap  time.Duration
		last int
		want bool
	}{
		{"first request ever", time.Hour, 0, false},
		{"right after a commit of one", 10 * time.Microsecond, 1, true},
		{"just within the close gap", 49 * time.Microsecond, 1, true},
		{"a lone answer 100 µs after a commit of one (2,000 qps by chance)", 100 * time.Microsecond, 1, false},
		{"100 µs after a commit of several", 100 * time.Microsecond, 5, true},
		{"at the busy gap after a commit of several", 200 * time.Microsecond, 5, false},
		{"long after a commit of several", time.Millisecond, 20, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := underLoad(c.gap, c.last); got != c.want {
				t.Errorf("underLoad(%v, %d) = %v, want %v", c.gap, c.last, got, c.want)
			}
		})
	}
}
