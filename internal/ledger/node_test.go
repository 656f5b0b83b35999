package ledger

import (
	"math"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fqdngate/fqdngate/internal/policy"
)

func nodeAnswer(client, node, name string, expires time.Time, as ...string) Answer {
	a := answer(netip.MustParseAddr(client), name, expires, as...)
	a.Node = node
	return a
}

// TestNodes: every entry says which cluster node answered, the newest
// answer's node wins, and what the ledger hands out (Select, Live,
// TakeChanges, Repolicy, Restore) keeps it.
func TestNodes(t *testing.T) {
	exp := t0.Add(time.Minute)
	tests := []struct {
		name    string
		answers []Answer
		// want is the node of each (client, address) after the answers.
		want map[[2]string]string
	}{
		{"outside a cluster", []Answer{nodeAnswer("192.0.2.10", "", "a.example", exp, "203.0.113.1")},
			map[[2]string]string{{"192.0.2.10", "203.0.113.1"}: ""}},
		{"two nodes, two clients", []Answer{
			nodeAnswer("192.0.2.10", "gw1", "a.example", exp, "203.0.113.1"),
			nodeAnswer("192.0.2.11", "gw2", "a.example", exp, "203.0.113.1"),
		}, map[[2]string]string{{"192.0.2.10", "203.0.113.1"}: "gw1", {"192.0.2.11", "203.0.113.1"}: "gw2"}},
		{"the other node answers again", []Answer{
			nodeAnswer("192.0.2.10", "gw1", "a.example", exp, "203.0.113.1", "203.0.113.2"),
			nodeAnswer("192.0.2.10", "gw2", "a.example", exp.Add(-time.Second), "203.0.113.2"),
		}, map[[2]string]string{{"192.0.2.10", "203.0.113.1"}: "gw1", {"192.0.2.10", "203.0.113.2"}: "gw2"}},
		{"back to the first", []Answer{
			nodeAnswer("192.0.2.10", "gw1", "a.example", exp, "203.0.113.1"),
			nodeAnswer("192.0.2.10", "gw2", "a.example", exp, "203.0.113.1"),
			nodeAnswer("192.0.2.10", "gw1", "a.example", exp, "203.0.113.1"),
		}, map[[2]string]string{{"192.0.2.10", "203.0.113.1"}: "gw1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := New(Options{Track: true})
			for _, a := range tc.answers {
				l.Record(t0, a)
			}
			checkInvariants(t, l)
			check := func(how string, entries []Entry) {
				t.Helper()
				if len(entries) != len(tc.want) {
					t.Fatalf("%s: %d entries, want %d: %+v", how, len(entries), len(tc.want), entries)
				}
				for _, e := range entries {
					if want, ok := tc.want[[2]string{e.Client.String(), e.Addr.String()}]; !ok || e.Node != want || e.Group != "g" {
						t.Errorf("%s: %s %s node %q group %q, want node %q group g", how, e.Client, e.Addr, e.Node, e.Group, want)
					}
				}
			}
			sel, _ := l.Select(Filter{}, math.MaxInt)
			check("Select", sel)
			check("Live", l.Live(t0))
			written, _ := l.TakeChanges()
			check("TakeChanges", written)
			l.Repolicy(t0, func(Told) ([]policy.PortRange, []string, bool) {
				return []policy.PortRange{tcp443}, []string{"r2"}, true
			})
			check("after Repolicy", l.Live(t0))
			r := New(Options{Track: true})
			r.Restore(t0, l.Live(t0))
			checkInvariants(t, r)
			check("Restore", r.Live(t0))
			// WalkLive finds the group's entries whichever node answered.
			n := 0
			l.WalkLive(t0, "g", func(LiveAddr) { n++ })
			if n != len(tc.want) {
				t.Errorf("WalkLive: %d entries, want %d", n, len(tc.want))
			}
			l.GC(exp.Add(time.Hour))
			checkInvariants(t, l)
			if len(l.strs.groups.ids) != 0 {
				t.Errorf("groups table keeps %d pairs after every entry is gone", len(l.strs.groups.ids))
			}
		})
	}
}

// TestStoreNodes: the node survives a restart, a file written before
// nodes loads with none, and a node name the config would refuse is a
// damaged file.
func TestStoreNodes(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	path := filepath.Join(t.TempDir(), StoreFile)
	s, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	l := New(Options{Track: true})
	l.Record(now, nodeAnswer("192.0.2.10", "gw1", "a.example", now.Add(time.Minute), "203.0.113.1"))
	l.Record(now, nodeAnswer("192.0.2.10", "", "b.example", now.Add(time.Minute), "203.0.113.2"))
	if err := s.Flush(l); err != nil {
		t.Fatal(err)
	}
	// An entry as the version before nodes wrote it: no "n".
	old := Entry{Client: netip.MustParseAddr("192.0.2.11"), Addr: netip.MustParseAddr("203.0.113.3"), Name: "c.example"}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEntries).Put(storeKey(old.Client, old.Addr, old.Name),
			[]byte(`{"g":"g","r":["r"],"p":["tcp/443"],"t":20000,"l":1800000000000,"e":1800000060000}`))
	}); err != nil {
		t.Fatal(err)
	}
	entries, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	got := map[string]string{}
	for _, e := range entries {
		got[e.Name] = e.Node
	}
	if len(got) != 3 || got["a.example"] != "gw1" || got["b.example"] != "" || got["c.example"] != "" {
		t.Errorf("loaded nodes %v, want a.example gw1, b.example and c.example none", got)
	}
	// Outside a cluster the file stays as it was: no "n".
	if _, v, err := encodeEntry(old); err != nil || strings.Contains(string(v), `"n"`) {
		t.Errorf("an entry without a node is written as %s (%v)", v, err)
	}
	for _, bad := range []string{"gw.1", "gw 1", "*", strings.Repeat("x", 65)} {
		_, err := decodeEntry(storeKey(netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("203.0.113.1"), "a.example"),
			[]byte(`{"g":"g","n":"`+bad+`","r":["r"],"p":["tcp/443"],"t":0,"l":1,"e":2}`))
		if err == nil || !strings.Contains(err.Error(), "is not a cluster node name") {
			t.Errorf("node %q: %v, want refused", bad, err)
		}
	}
}
