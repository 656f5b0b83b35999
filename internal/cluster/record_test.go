package cluster

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func sampleRecord() Record {
	t0 := time.UnixMilli(1_790_000_000_000).UTC()
	return Record{Node: "gw1", Client: netip.MustParseAddr("192.0.2.10"), Group: "devices", Name: "prod.update.sphere.example",
		Chain: []string{"edge.cdn.example"}, Addr: netip.MustParseAddr("2001:db8::7"), TTL: 20 * time.Second,
		Learnt: t0, Expires: t0.Add(50 * time.Second)}
}

func TestRecordRoundTrip(t *testing.T) {
	r := sampleRecord()
	b, err := Encode(r.Node, []Record{r, r})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := Decode(b)
	if err != nil || len(recs) != 2 {
		t.Fatalf("Decode: %d records, %v", len(recs), err)
	}
	got := recs[1]
	if got.Node != r.Node || got.Client != r.Client || got.Addr != r.Addr || got.Name != r.Name || got.Group != r.Group ||
		len(got.Chain) != 1 || got.Chain[0] != r.Chain[0] || got.TTL != r.TTL || !got.Learnt.Equal(r.Learnt) || !got.Expires.Equal(r.Expires) {
		t.Fatalf("round trip: got %+v, want %+v", got, r)
	}
}

func TestDecodeRefuses(t *testing.T) {
	good, _ := Encode("gw1", []Record{sampleRecord()})
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"version", `"v":1`, `"v":2`, "version 2"},
		{"node", `"node":"gw1"`, `"node":"gw.1"`, "not a node name"},
		{"client", `"client":"192.0.2.10"`, `"client":"192.0.2.300"`, "client"},
		{"zone", `"client":"192.0.2.10"`, `"client":"fe80::1%eth0"`, "client"},
		{"addr", `"addr":"2001:db8::7"`, `"addr":"x"`, "addr"},
		{"name not normalised", `"name":"prod.update.sphere.example"`, `"name":"Prod.Update.sphere.example"`, "normalised"},
		{"chain", `"chain":["edge.cdn.example"]`, `"chain":["edge..cdn"]`, "chain name"},
		{"unknown field", `"v":1`, `"v":1,"x":2`, "unknown field"},
		{"lifetime", `"expires_ms":1790000050000`, `"expires_ms":1`, "not a lifetime"},
		{"negative ttl", `"ttl_ms":20000`, `"ttl_ms":-1`, "not a lifetime"},
		{"no records", `"records":[{`, `"records":[],"x":[{`, "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := strings.Replace(string(good), tc.old, tc.new, 1)
			if b == string(good) {
				t.Fatalf("test does not change the record: %s", good)
			}
			_, err := Decode([]byte(b))
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode(%s) = %v, want an error naming %q", b, err, tc.want)
			}
		})
	}
	if _, err := Decode([]byte(strings.Repeat(" ", maxMessageBytes+1))); !errors.Is(err, ErrMalformed) {
		t.Fatalf("an oversized message: %v", err)
	}
	many := make([]Record, maxRecords+1)
	for i := range many {
		many[i] = sampleRecord()
	}
	b, _ := Encode("gw1", many)
	if _, err := Decode(b); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "records") {
		t.Fatalf("%d records in one message: %v", len(many), err)
	}
	if _, err := Decode([]byte(`{"v":1,"node":"gw1","records":[]}`)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a message without records: %v", err)
	}
}

func TestChunks(t *testing.T) {
	small := make([]Record, 2000)
	for i := range small {
		small[i] = sampleRecord()
	}
	if n := chunkLen(small); n != batchMax {
		t.Fatalf("chunk of %d small records, want %d", n, batchMax)
	}
	big := make([]Record, 100)
	for i := range big {
		big[i] = sampleRecord()
		big[i].Name = strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + ".example"
		big[i].Chain = nil
		for range maxChain {
			big[i].Chain = append(big[i].Chain, big[i].Name)
		}
	}
	n := chunkLen(big)
	body, _ := Encode("gw1", big[:n])
	if n == 0 || n == len(big) || len(body) > maxMessageBytes {
		t.Fatalf("chunk of %d large records, %d bytes; want fewer than %d and at most %d bytes", n, len(body), len(big), maxMessageBytes)
	}
	if _, err := Decode(body); err != nil {
		t.Fatal(err)
	}
}

func TestFreshness(t *testing.T) {
	now := time.Now()
	f := &freshness{max: 3, last: map[freshKey]int64{}}
	r := sampleRecord()
	steps := []struct {
		name    string
		expires time.Duration
		want    bool
	}{
		{"first", 7 * time.Minute, true},
		{"the same expiry again (a cached answer)", 7 * time.Minute, false},
		{"an earlier expiry", 6 * time.Minute, false},
		{"a refresh by 10 ms", 7*time.Minute + 10*time.Millisecond, true},
	}
	for _, s := range steps {
		r.Expires = now.Add(s.expires)
		if got := f.worthPublishing(r); got != s.want {
			t.Fatalf("%s: publish %v, want %v", s.name, got, s.want)
		}
	}
	// A publication the server did not store is forgotten: the same
	// answer served again is published.
	f.unpublished([]Record{r})
	if !f.worthPublishing(r) {
		t.Fatal("an answer whose publication failed is not published again")
	}
	// At its bound the memory starts again.
	for i := range 5 {
		o := sampleRecord()
		o.Name = fmt.Sprintf("o%d.example", i)
		o.Expires = now.Add(time.Minute)
		f.worthPublishing(o)
	}
	if len(f.last) > 3 {
		t.Fatalf("freshness holds %d entries, bound 3", len(f.last))
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := Encode("gw1", []Record{sampleRecord()})
	f.Add(good)
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := Decode(b)
		if err != nil {
			return
		}
		// What decodes encodes and decodes to the same records.
		b2, err := Encode(recs[0].Node, recs)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Decode(b2)
		if err != nil || len(again) != len(recs) {
			t.Fatalf("re-decode: %d records, %v; want %d", len(again), err, len(recs))
		}
		for i, r := range recs {
			r2 := again[i]
			if r2.Node != r.Node || r2.Name != r.Name || r2.Addr != r.Addr || r2.Client != r.Client || !r2.Expires.Equal(r.Expires) {
				t.Fatalf("re-decode: %+v, want %+v", r2, r)
			}
		}
	})
}

// TestRate: a quiet node publishes at once, a busy one lingers, and a
// burst followed by silence is quiet again.
func TestRate(t *testing.T) {
	var r rate
	t0 := time.Unix(1_790_000_000, 0)
	steps := []struct {
		name string
		at   time.Duration
		n    int
		want bool
	}{
		{"a first answer", 0, 1, false},
		{"a few more", 50 * time.Millisecond, 10, false},
		{"a hundred in the window", 90 * time.Millisecond, 89, true},
		{"the next window, after a busy one", 150 * time.Millisecond, 1, true},
		{"two windows later, quiet", 260 * time.Millisecond, 1, false},
		{"after a long silence", 5 * time.Second, 1, false},
	}
	for _, s := range steps {
		if got := r.busy(t0.Add(s.at), s.n); got != s.want {
			t.Fatalf("%s: busy %v, want %v", s.name, got, s.want)
		}
	}
}
