package cluster

import (
	"errors"
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
	b, err := Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Node != r.Node || got.Client != r.Client || got.Addr != r.Addr || got.Name != r.Name || got.Group != r.Group ||
		len(got.Chain) != 1 || got.Chain[0] != r.Chain[0] || got.TTL != r.TTL || !got.Learnt.Equal(r.Learnt) || !got.Expires.Equal(r.Expires) {
		t.Fatalf("round trip: got %+v, want %+v", got, r)
	}
}

func TestDecodeRefuses(t *testing.T) {
	good, _ := Encode(sampleRecord())
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
	if _, err := Decode([]byte(strings.Repeat(" ", maxRecordBytes+1))); !errors.Is(err, ErrMalformed) {
		t.Fatalf("an oversized record: %v", err)
	}
}

func TestSubject(t *testing.T) {
	r := sampleRecord()
	s := subject("site-a", r)
	want := "fqdngate.site-a.gw1.answers.192-0-2-10.2001-db8--7."
	if !strings.HasPrefix(s, want) || strings.ContainsAny(s[len("fqdngate."):], ":* >") {
		t.Fatalf("subject %q, want prefix %q and no ':', '*', '>' or space", s, want)
	}
	r2 := r
	r2.Name = "other.example"
	if subject("site-a", r2) == s {
		t.Fatal("two names share a subject: the stream would keep only one")
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := Encode(sampleRecord())
	f.Add(good)
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		// What decodes encodes and decodes to the same record.
		b2, err := Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := Decode(b2)
		if err != nil || r2.Name != r.Name || r2.Addr != r.Addr || r2.Client != r.Client || !r2.Expires.Equal(r.Expires) {
			t.Fatalf("re-decode: %+v %v, want %+v", r2, err, r)
		}
	})
}
