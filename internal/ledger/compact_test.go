package ledger

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/policy"
)

// checkInvariants walks the compact ledger and fails on any index, list,
// heap or reference count that disagrees with the slab.
func checkInvariants(t *testing.T, l *Ledger) {
	t.Helper()
	used := 0
	clients, names, groups, lists, rules, ports := map[uint32]uint32{}, map[uint32]uint32{}, map[uint32]uint32{}, map[uint32]uint32{}, map[uint32]uint32{}, map[uint32]uint32{}
	onName, onAddr := 0, 0
	for i := range uint32(l.slab.len()) {
		e := l.slab.at(i)
		if !e.used() {
			continue
		}
		used++
		clients[e.client]++
		names[e.name]++
		groups[e.group]++
		lists[e.chain]++
		rules[e.rules]++
		ports[e.ports]++
		if l.expiry.idx[e.heap] != uint32(i) {
			t.Fatalf("entry %d: heap position %d holds %d", i, e.heap, l.expiry.idx[e.heap])
		}
	}
	if used != l.n || used != l.expiry.len() {
		t.Fatalf("used %d, n %d, heap %d", used, l.n, l.expiry.len())
	}
	for k, h := range l.byName {
		prev, n := none, 0
		for i := h.head; i != none; i = l.slab.at(i).nextName {
			e := l.slab.at(i)
			if !e.used() || e.client != k.client || e.name != k.name || e.prevName != prev {
				t.Fatalf("name list %v broken at %d", k, i)
			}
			prev = i
			n++
		}
		if int(h.n) != n {
			t.Fatalf("name %v: count %d, list %d", k, h.n, n)
		}
		onName += n
	}
	for a, h := range l.byAddr {
		prev := none
		for i := h; i != none; i = l.slab.at(i).nextAddr {
			e := l.slab.at(i)
			if !e.used() || e.addr != a || e.prevAddr != prev {
				t.Fatalf("address list %v broken at %d", a.addr(), i)
			}
			prev = i
			onAddr++
		}
	}
	if onName != used || onAddr != used {
		t.Fatalf("lists hold %d and %d of %d entries", onName, onAddr, used)
	}
	checkHeap(t, l, &l.expiry, "ledger")
	checkShares(t, l, clients)
	// A long list has its index, exactly its entries; a short one none.
	for k, nl := range l.byName {
		ll := l.long[k]
		switch {
		case nl.n >= l.longAt && ll == nil:
			t.Fatalf("name %v: %d entries and no index", k, nl.n)
		case nl.n < l.shortAt && ll != nil:
			t.Fatalf("name %v: %d entries and an index", k, nl.n)
		case ll == nil:
			continue
		}
		if len(ll.at) != int(nl.n) || ll.heap.len() != int(nl.n) {
			t.Fatalf("name %v: %d entries, index %d, heap %d", k, nl.n, len(ll.at), ll.heap.len())
		}
		for i := nl.head; i != none; i = l.slab.at(i).nextName {
			if ll.at[l.slab.at(i).addr] != i || ll.heap.idx[l.slab.at(i).nameHeap] != i {
				t.Fatalf("name %v: entry %d not indexed", k, i)
			}
		}
		checkHeap(t, l, &ll.heap, fmt.Sprint("name ", k))
	}
	for k := range l.long {
		if _, ok := l.byName[k]; !ok {
			t.Fatalf("index of name %v, which has no entries", k)
		}
	}
	refs := func(what string, got []uint32, want map[uint32]uint32, ids map[string]uint32) {
		live := 0
		for id, r := range got {
			if r != want[uint32(id)] {
				t.Fatalf("%s %d: %d references, %d users", what, id, r, want[uint32(id)])
			}
			if r > 0 {
				live++
			}
		}
		if live != len(ids) {
			t.Fatalf("%s: %d referenced, %d interned", what, live, len(ids))
		}
	}
	refs("client", l.strs.clients.refs, clients, l.strs.clients.ids)
	refs("name", l.strs.names.refs, names, l.strs.names.ids)
	refs("group", l.strs.groups.refs, groups, l.strs.groups.ids)
	refs("chain", l.strs.lists.refs, lists, l.strs.lists.ids)
	refs("rules", l.strs.rules.refs, rules, l.strs.rules.ids)
	refs("ports", l.strs.ports.refs, ports, l.strs.ports.ids)
}

// TestLedgerRandomOperations drives a small ledger (tight caps, few
// clients, names and addresses, so that everything collides) with random
// records, policy changes and collections, checking after each step the
// invariants, and that what Record and Repolicy revoke is exactly what no
// remaining live entry covers.
// The second kind of case lets lists grow past a lowered longAt and
// shrink below shortAt, so that their indexes are built, used and
// dropped.
func TestLedgerRandomOperations(t *testing.T) {
	for _, c := range []struct {
		name                   string
		maxPerName, maxEntries int
		addrs                  int
		longAt, shortAt        uint32
		maxPerClient           int
	}{
		{"short lists", 3, 20, 8, defaultLongAt, defaultShortAt, 0},
		{"long lists", 12, 40, 24, 4, 2, 0},
		{"client quota", 3, 20, 8, defaultLongAt, defaultShortAt, 8},
		{"client quota long lists", 12, 40, 24, 4, 2, 16},
	} {
		for _, global := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/global=%v", c.name, global), func(t *testing.T) {
				r := rand.New(rand.NewPCG(1, 2))
				l := New(Options{MaxPerName: c.maxPerName, MaxEntries: c.maxEntries, MaxPerClient: c.maxPerClient, Retention: time.Minute, Global: global, Track: true})
				l.longAt, l.shortAt = c.longAt, c.shortAt
				clients := []netip.Addr{devA, devB, netip.MustParseAddr("192.0.2.12")}
				portSets := [][]policy.PortRange{{tcp443}, {tcp443, tcp8883}, {tcp8883}}
				// The policy: ports per name, nil when denied. Record follows
				// it, as the handler does; Repolicy changes it.
				pol := map[string][]policy.PortRange{}
				for i := range 5 {
					pol[fmt.Sprintf("n%d.example", i)] = portSets[i%3]
				}
				now := t0
				for step := range 3000 {
					now = now.Add(time.Duration(r.IntN(5000)) * time.Millisecond)
					before := liveElems(l, now, global)
					var revoke []Elem
					what := "gc"
					switch op := r.IntN(10); {
					case op < 7:
						var as []string
						for range 1 + r.IntN(3) {
							as = append(as, fmt.Sprintf("203.0.113.%d", r.IntN(c.addrs)))
						}
						name := fmt.Sprintf("n%d.example", r.IntN(5))
						if pol[name] == nil {
							continue
						}
						a := answer(clients[r.IntN(len(clients))], name, now.Add(time.Duration(1+r.IntN(40))*time.Second), as...)
						a.Ports = pol[name]
						a.Chain = []string{fmt.Sprintf("c%d.cdn.example", r.IntN(3))}
						for _, g := range l.GrantsOf(a) {
							before[g.Elem] = true // installed before Record
						}
						revoke = l.Record(now, a)
						what = fmt.Sprintf("record %v", a)
					case op < 9:
						name := fmt.Sprintf("n%d.example", r.IntN(5))
						if pol[name] = portSets[r.IntN(3)]; r.IntN(3) == 0 {
							pol[name] = nil
						}
						var grant []Grant
						revoke, grant = l.Repolicy(now, func(t Told) ([]policy.PortRange, []string, bool) {
							name := t.Name
							return pol[name], []string{"r2"}, pol[name] != nil
						})
						what = fmt.Sprintf("repolicy %s %v", name, pol[name])
						for _, g := range grant {
							before[g.Elem] = true
						}
					default:
						l.GC(now)
					}
					checkInvariants(t, l)
					after := liveElems(l, now, global)
					for e := range before {
						if !after[e] != slices.Contains(revoke, e) {
							t.Fatalf("step %d (%s): %v live before, live after %v, revoked %v", step, what, e, after[e], slices.Contains(revoke, e))
						}
					}
					l.TakeChanges()
				}
				// What a restart reads back builds the same ledger.
				saved, _ := l.Select(Filter{}, 1<<20)
				r2 := New(Options{MaxPerName: c.maxPerName, MaxEntries: c.maxEntries, MaxPerClient: c.maxPerClient, Retention: time.Minute, Global: global})
				r2.longAt, r2.shortAt = c.longAt, c.shortAt
				if kept, _ := r2.Restore(now, saved); kept != len(saved) {
					t.Fatalf("restored %d of %d", kept, len(saved))
				}
				checkInvariants(t, r2)
				if got, _ := r2.Select(Filter{}, 1<<20); !slices.EqualFunc(got, saved, func(x, y Entry) bool { return fmt.Sprint(x) == fmt.Sprint(y) }) {
					t.Fatalf("restored\n%v\nwant\n%v", got, saved)
				}
			})
		}
	}
}

// checkShares checks each client's heap against the entries it holds
// (perClient counts them), and the heap of clients by size.
func checkShares(t *testing.T, l *Ledger, perClient map[uint32]uint32) {
	t.Helper()
	for i := range uint32(l.slab.len()) {
		if e := l.slab.at(i); e.used() && l.clients.by[e.client].heap.idx[e.clientHeap] != i {
			t.Fatalf("entry %d: not at its position in its client's heap", i)
		}
	}
	holding := 0
	for id, sh := range l.clients.by {
		if sh.heap.len() != int(perClient[uint32(id)]) {
			t.Fatalf("client %d: heap %d, entries %d", id, sh.heap.len(), perClient[uint32(id)])
		}
		// Over the quota by one answer's addresses at most: those of the
		// answer being recorded are not evicted for it.
		if l.opts.MaxPerClient < l.opts.MaxEntries && sh.heap.len() > l.opts.MaxPerClient+l.opts.MaxPerName {
			t.Fatalf("client %d holds %d, over its quota %d", id, sh.heap.len(), l.opts.MaxPerClient)
		}
		checkHeap(t, l, &sh.heap, fmt.Sprint("client ", id))
		switch {
		case sh.heap.len() == 0 && sh.at != none:
			t.Fatalf("client %d: no entries, in the heap of clients", id)
		case sh.heap.len() > 0:
			holding++
			if l.clients.big[sh.at] != uint32(id) {
				t.Fatalf("client %d: not at its position in the heap of clients", id)
			}
		}
	}
	if holding != len(l.clients.big) {
		t.Fatalf("%d clients hold entries, %d in the heap of clients", holding, len(l.clients.big))
	}
	for i := 1; i < len(l.clients.big); i++ {
		if l.clients.more(i, (i-1)/2) {
			t.Fatalf("heap of clients: order broken at %d", i)
		}
	}
}

func checkHeap(t *testing.T, l *Ledger, h *expiryHeap, what string) {
	t.Helper()
	for i := 1; i < h.len(); i++ {
		if h.less(&l.slab, i, (i-1)/2) {
			t.Fatalf("%s heap: order broken at %d", what, i)
		}
	}
}

func liveElems(l *Ledger, now time.Time, global bool) map[Elem]bool {
	out := map[Elem]bool{}
	for _, e := range l.Live(now) {
		c := e.Client
		if global {
			c = netip.Addr{}
		}
		for _, p := range e.Ports {
			out[Elem{c, e.Addr, p}] = true
		}
	}
	return out
}
