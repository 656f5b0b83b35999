package feeds

import (
	"context"
	"fmt"
	"time"

	"github.com/fqdngate/fqdngate/internal/dnsproxy"
	"github.com/fqdngate/fqdngate/internal/enforce"
	"github.com/fqdngate/fqdngate/internal/ledger"
)

// Hold is the enforcer the DNS handler gets when a push target has
// hold: true: rule before answer on the site's own firewall. An answer
// is installed by the kernel enforcer (which may be None), then queued
// for every holding target, and waits for each one's acknowledgement;
// all of it within the hold budget, past which the client gets
// SERVFAIL. It is not an enforce.Holder: an answer the
// kernel already holds must still reach the firewall (its timeout is
// renewed), so the handler always calls AllowAnswer.
type Hold struct {
	enforce.Enforcer
	holder  enforce.Holder
	targets []*Pusher
	budget  time.Duration
}

// NewHold wraps inner for the targets that hold; budget is enforcer.hold.
func NewHold(inner enforce.Enforcer, targets []*Pusher, budget time.Duration) *Hold {
	h := &Hold{Enforcer: inner, budget: budget}
	h.holder, _ = inner.(enforce.Holder)
	for _, t := range targets {
		if t.Holds() {
			h.targets = append(h.targets, t)
		}
	}
	return h
}

// AllowAnswer implements enforce.AnswerAllower.
func (h *Hold) AllowAnswer(ctx context.Context, grants []enforce.Grant, parts ...ledger.Answer) error {
	ctx, cancel := context.WithTimeout(ctx, h.budget)
	defer cancel()
	// The kernel first (tens of microseconds): an answer it refuses must
	// not reach the firewall either.
	if h.holder == nil || !h.holder.Holds(grants) {
		if err := h.Enforcer.Allow(ctx, grants); err != nil {
			return err
		}
	}
	type wait struct {
		t  *Pusher
		ch <-chan error
	}
	waits := make([]wait, 0, len(h.targets)*len(parts))
	for _, t := range h.targets {
		for i := range parts {
			ch, err := t.OfferHold(&parts[i])
			if err != nil {
				return fmt.Errorf("push to %s: %w", t.o.Label, err)
			}
			waits = append(waits, wait{t, ch})
		}
	}
	for _, w := range waits {
		select {
		case err := <-w.ch:
			if err != nil {
				return fmt.Errorf("push to %s: %w", w.t.o.Label, err)
			}
		case <-ctx.Done():
			return fmt.Errorf("%w: firewall %s did not acknowledge within %s", enforce.ErrHoldTimeout, w.t.o.Label, h.budget)
		}
	}
	return nil
}

// Observer offers every released answer to the targets that do not
// hold (the holding ones had it in AllowAnswer). It never blocks.
type Observer struct {
	targets []*Pusher
}

// NewObserver is the observer of the targets that do not hold.
func NewObserver(targets []*Pusher) *Observer {
	o := &Observer{}
	for _, t := range targets {
		if !t.Holds() {
			o.targets = append(o.targets, t)
		}
	}
	return o
}

// Query implements dnsproxy.Observer.
func (o *Observer) Query(out dnsproxy.Outcome) {
	if out.Answer == nil {
		return
	}
	for _, t := range o.targets {
		t.Offer(out.Answer)
	}
}

// RevokeLater hands an eviction's removals to the kernel enforcer's own
// queue, as the handler does without a hold (dnsproxy revokeEvicted): a
// hold must not make evictions wait. An enforcer without a queue (backend
// none) removes them at once.
func (h *Hold) RevokeLater(elems []ledger.Elem) bool {
	if lr, ok := h.Enforcer.(interface{ RevokeLater([]ledger.Elem) bool }); ok {
		return lr.RevokeLater(elems)
	}
	return h.Enforcer.Revoke(context.Background(), elems) == nil
}
