package enforce

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/lab"
	"github.com/fqdngate/fqdngate/internal/ledger"
)

// TestRevokeLaterNeverWaits: removals are queued while there is room and
// refused, at once, when the writer's queue is full.
func TestRevokeLaterNeverWaits(t *testing.T) {
	n := &NFT{reqs: make(chan *request, 2), done: make(chan struct{})}
	defer close(n.done)
	e := ledger.Elem{Client: client4, Addr: netip.MustParseAddr("203.0.113.7"), Port: tcp443}
	for i, c := range []struct {
		elems []ledger.Elem
		want  bool
	}{
		{[]ledger.Elem{e}, true},
		{nil, true}, // nothing to remove: nothing queued
		{[]ledger.Elem{e, e}, true},
		{[]ledger.Elem{e}, false},
	} {
		if got := n.RevokeLater(c.elems); got != c.want {
			t.Fatalf("call %d: %v, want %v", i, got, c.want)
		}
	}
	if len(n.reqs) != 2 {
		t.Fatalf("%d requests queued, want 2", len(n.reqs))
	}
	if r := <-n.reqs; !slices.Equal(r.revokes, []ledger.Elem{e}) || r.grants != nil {
		t.Fatalf("queued %+v", r)
	}
}

// TestRevokeLaterRemoves: a queued removal reaches the kernel.
func TestRevokeLaterRemoves(t *testing.T) {
	eachRefreshMode(t, func(t *testing.T, ns *lab.NS, n *NFT) {
		e := ledger.Elem{Client: client4, Addr: netip.MustParseAddr("203.0.113.7"), Port: tcp443}
		if err := n.Allow(context.Background(), []Grant{{Elem: e, Expires: time.Now().Add(time.Minute)}}); err != nil {
			t.Fatal(err)
		}
		if !n.RevokeLater([]ledger.Elem{e}) {
			t.Fatal("an empty queue refused the removal")
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, ok := expiresIn(t, ns, "allow4", "192.0.2.10 . 203.0.113.7 . tcp . 443"); !ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the element is still in the set 5s after its removal was queued")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}
