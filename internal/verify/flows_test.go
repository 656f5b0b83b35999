package verify

import (
	"net/netip"
	"testing"
	"time"
)

// TestVerdictsKeepsTheNewest: past its bound, the oldest verdict goes,
// never the newest (a late packet of a flow just judged must find its
// verdict however many flows came before it); a verdict set again on the
// same key is not dropped with its older slot; time still expires them.
func TestVerdictsKeepsTheNewest(t *testing.T) {
	key := func(i int) FlowKey {
		return FlowKey{netip.AddrPortFrom(client, uint16(i)), netip.AddrPortFrom(edge, 443)}
	}
	v := newVerdicts(4)
	for i := range 10 {
		v.remember(t0, key(i), uint32(i))
	}
	for _, c := range []struct {
		i    int
		want bool
	}{{0, false}, {5, false}, {6, true}, {9, true}} {
		if m, ok := v.lookup(key(c.i)); ok != c.want || (ok && m != uint32(c.i)) {
			t.Errorf("flow %d: verdict %d, remembered %v, want %v", c.i, m, ok, c.want)
		}
	}
	if v.len() != 4 {
		t.Errorf("remembered %d, want the bound 4", v.len())
	}
	// Flow 6 judged again: its first slot goes next, its verdict stays.
	v.remember(t0.Add(time.Second), key(6), 60)
	if m, ok := v.lookup(key(6)); !ok || m != 60 {
		t.Errorf("flow 6 judged again: %d %v", m, ok)
	}
	v.forget(key(9))
	if _, ok := v.lookup(key(9)); ok {
		t.Error("a forgotten verdict is still there")
	}
	v.expire(t0.Add(MaxWait))
	if _, ok := v.lookup(key(7)); ok {
		t.Error("a verdict older than MaxWait is still there")
	}
	if _, ok := v.lookup(key(6)); !ok {
		t.Error("a verdict younger than MaxWait expired")
	}
}
