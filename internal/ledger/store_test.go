package ledger

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fqdngate/fqdngate/internal/policy"
)

func TestStoreRoundTripAndRestore(t *testing.T) {
	path := filepath.Join(t.TempDir(), StoreFile)
	s, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	l := New(Options{Track: true})
	a := answer(devA, "www.example.com", now.Add(25*time.Second), "203.0.113.5", "203.0.113.6")
	l.Record(now, a)
	l.Record(now, answer(devA, "old.example.com", now.Add(-3*time.Hour), "203.0.113.9"))
	if err := s.Flush(l); err != nil {
		t.Fatal(err)
	}
	if w, r := l.TakeChanges(); len(w)+len(r) != 0 {
		t.Fatalf("changes left after flush: %v %v", w, r)
	}
	// A removal reaches the file too.
	l.GC(now)
	if err := s.Flush(l); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	entries, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("loaded %d entries, want 2 (the expired one was collected)", len(entries))
	}
	l2 := New(Options{Track: true})
	kept, dropped := l2.Restore(now.Add(10*time.Second), entries)
	if kept != 2 || dropped != 0 {
		t.Fatalf("kept %d dropped %d", kept, dropped)
	}
	got := l2.Lookup(netip.MustParseAddr("203.0.113.5"), devA)
	if len(got) != 1 || got[0].Name != "www.example.com" || got[0].Chain[1] != "a1.cdn.example" ||
		!got[0].Expires.Equal(a.Expires) || got[0].Ports[0] != a.Ports[0] || got[0].TTL != 20*time.Second {
		t.Errorf("restored %+v", got)
	}
	if w, _ := l2.TakeChanges(); len(w) != 0 {
		t.Errorf("restore marked %d entries to write back", len(w))
	}
	if kept, dropped := New(Options{}).Restore(now.Add(2*time.Hour), entries); kept != 0 || dropped != 2 {
		t.Errorf("past retention: kept %d dropped %d", kept, dropped)
	}
}

func TestStoreRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	s, err := OpenStore(good)
	if err != nil {
		t.Fatal(err)
	}
	l := New(Options{Track: true})
	l.Record(time.Now(), answer(devA, "www.example.com", time.Now().Add(time.Minute), "203.0.113.5"))
	if err := s.Flush(l); err != nil {
		t.Fatal(err)
	}
	s.Close()
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}

	garbage := filepath.Join(dir, "garbage.db")
	os.WriteFile(garbage, []byte(strings.Repeat("not a database ", 1000)), 0o600)
	truncated := filepath.Join(dir, "truncated.db")
	os.WriteFile(truncated, data[:len(data)/3], 0o600)
	foreign := filepath.Join(dir, "foreign.db")
	db, err := bolt.Open(foreign, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("someone-else")); return err })
	db.Close()

	for _, path := range []string{garbage, truncated, foreign} {
		before, _ := os.ReadFile(path)
		_, err := OpenStore(path)
		if err == nil {
			t.Errorf("%s opened", path)
			continue
		}
		if !errors.Is(err, ErrStore) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "move it away") {
			t.Errorf("%s: %v", path, err)
		}
		if after, _ := os.ReadFile(path); string(after) != string(before) {
			t.Errorf("%s was changed by a failed open", path)
		}
	}

	held, err := OpenStore(good)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := OpenStore(good); err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Errorf("second open: %v", err)
	}
}

// FuzzStoredEntry feeds the decoder what a damaged state file could hold.
// Whatever it accepts must restore into a ledger whose indexes, lists and
// reference counts agree, and must be written back byte for byte the same.
func FuzzStoredEntry(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	good := Entry{Client: netip.MustParseAddr("192.0.2.10"), Addr: netip.MustParseAddr("2001:db8::7"),
		Name: "prod.update.sphere.azure.net", Group: "devices", Chain: []string{"a.edgekey.example", "e1.akamaiedge.example"},
		Rules: []string{"azure-sphere"}, Ports: []policy.PortRange{{Proto: 6, Lo: 443, Hi: 443}},
		TTL: 20 * time.Second, Learnt: now, Expires: now.Add(2 * time.Minute)}
	k, v, err := encodeEntry(good)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(k, v)
	f.Add(k, []byte(`{"g":"devices","n":"gw-1_a","r":["azure-sphere"],"p":["tcp/443"],"t":20000,"l":5,"e":6}`))
	f.Add(k, []byte(`{"g":"devices","n":"gw.1","r":[],"p":[],"t":0,"l":5,"e":6}`))
	f.Add(k[:20], v)
	f.Add(k, v[:len(v)/2])
	f.Add(append(k[:32:32], "a\x00b.example"...), v)
	f.Add(k, []byte(`{"g":"x","c":["a\u0000b",""],"r":[],"p":["tcp/0"],"t":-1,"l":5,"e":4}`))
	f.Add(k, []byte(`{"g":"","r":null,"p":["udp/1-65535"],"t":0,"l":0,"e":9223372036854775807}`))
	f.Fuzz(func(t *testing.T, k, v []byte) {
		e, err := decodeEntry(k, v)
		if err != nil {
			return
		}
		k2, v2, err := encodeEntry(e)
		if err != nil {
			t.Fatalf("decoded entry does not encode: %v", err)
		}
		e2, err := decodeEntry(k2, v2)
		if err != nil || !reflect.DeepEqual(e, e2) {
			t.Fatalf("round trip changed the entry:\n%+v\n%+v (%v)", e, e2, err)
		}
		l := New(Options{Track: true, Retention: time.Hour})
		l.Restore(e.Learnt, []Entry{e, good})
		checkInvariants(t, l)
		l.Record(e.Learnt, Answer{Client: e.Client, Group: e.Group, Name: e.Name, Chain: e.Chain, Addrs: []netip.Addr{e.Addr},
			Rules: e.Rules, Ports: e.Ports, TTL: e.TTL, Expires: e.Expires.Add(time.Second)})
		l.GC(e.Expires.Add(2 * time.Hour))
		checkInvariants(t, l)
	})
}
