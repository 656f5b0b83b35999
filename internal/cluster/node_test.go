package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// kernel is a fake Applier: what a node's kernel and ledger would hold,
// newest expiry winning; names under "denied." are refused as a policy
// would.
type kernel struct {
	mu   sync.Mutex
	held map[string]Record // by client/name/addr
}

func newKernel() *kernel { return &kernel{held: map[string]Record{}} }

func key(r Record) string { return r.Client.String() + "/" + r.Name + "/" + r.Addr.String() }

func (k *kernel) Apply(_ context.Context, recs []Record) []Verdict {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]Verdict, len(recs))
	for i, r := range recs {
		if strings.HasPrefix(r.Name, "denied.") {
			out[i] = Denied
			continue
		}
		if have, ok := k.held[key(r)]; !ok || r.Expires.After(have.Expires) {
			k.held[key(r)] = r
		}
	}
	return out
}

func (k *kernel) get(r Record) (Record, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	h, ok := k.held[key(r)]
	return h, ok
}

func (k *kernel) len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.held)
}

func freePort(t testing.TB) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return netip.MustParseAddrPort(l.Addr().String())
}

type site struct {
	t      testing.TB
	addrs  map[string]netip.AddrPort
	stores map[string]string
}

func newSite(t testing.TB, nodes ...string) *site {
	s := &site{t: t, addrs: map[string]netip.AddrPort{}, stores: map[string]string{}}
	for _, n := range nodes {
		s.addrs[n] = freePort(t)
		s.stores[n] = t.TempDir()
	}
	return s
}

func (s *site) config(node string) Config {
	c := Config{Site: "lab", Node: node, Embedded: true, Listen: s.addrs[node], Token: "s3cret",
		StoreDir: s.stores[node], MaxLife: time.Hour, MaxEntries: 1000, CatchupTimeout: 2 * time.Second}
	for _, a := range s.addrs {
		// Every node lists them all, itself included.
		c.Routes = append(c.Routes, "nats://"+a.String())
	}
	return c
}

func (s *site) start(node string, k *kernel) *Node {
	s.t.Helper()
	n, err := Start(context.Background(), s.config(node), k, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(n.Close)
	return n
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func rec(node, name string, addr string, expires time.Time) Record {
	return Record{Node: node, Client: netip.MustParseAddr("192.0.2.10"), Group: "devices", Name: name,
		Addr: netip.MustParseAddr(addr), TTL: 30 * time.Second, Learnt: time.Now(), Expires: expires}
}

func TestReplicatesBothWays(t *testing.T) {
	s := newSite(t, "gw1", "gw2")
	k1, k2 := newKernel(), newKernel()
	n1, n2 := s.start("gw1", k1), s.start("gw2", k2)
	eventually(t, "both ready", func() bool { a, _ := n1.Ready(); b, _ := n2.Ready(); return a && b })
	exp := time.Now().Add(5 * time.Minute)
	a := rec("gw1", "a.example", "198.51.100.1", exp)
	b := rec("gw2", "b.example", "2001:db8::2", exp)
	n1.Publish(a)
	n2.Publish(b)
	eventually(t, "gw2 to hold gw1's answer", func() bool { _, ok := k2.get(a); return ok })
	eventually(t, "gw1 to hold gw2's answer", func() bool { _, ok := k1.get(b); return ok })
	if _, ok := k1.get(a); ok {
		t.Fatal("gw1 applied its own answer from a peer: it is in its kernel already")
	}
	if got, _ := k2.get(a); !got.Expires.Equal(exp.Truncate(time.Millisecond)) && got.Expires.UnixMilli() != exp.UnixMilli() {
		t.Fatalf("expiry %v, want %v (absolute, as granted)", got.Expires, exp)
	}
	var m dto.Metric
	if err := n2.m.lag.Write(&m); err != nil || m.GetHistogram().GetSampleCount() != 1 {
		t.Fatalf("gw2's replication lag histogram holds %d samples (%v), want the one answer", m.GetHistogram().GetSampleCount(), err)
	}
	st := n1.Status()
	if len(st.Peers) != 1 || !st.Peers[0].Up || len(st.Peers[0].Nodes) != 1 || st.Peers[0].Nodes[0] != "gw2" {
		t.Fatalf("gw1's view of its site: %+v (the route to itself must be skipped)", st)
	}
}

func TestCatchUpBeforeReady(t *testing.T) {
	s := newSite(t, "gw1", "gw2")
	k1 := newKernel()
	n1 := s.start("gw1", k1)
	exp := time.Now().Add(time.Hour)
	const total = 300
	for i := range total {
		n1.Publish(rec("gw1", fmt.Sprintf("n%d.example", i), "198.51.100.1", exp))
	}
	eventually(t, "gw1 to store its answers", func() bool { return testutil.ToFloat64(n1.m.published) == total })

	// gw2 starts late: it is not ready before it has all of them.
	k2 := newKernel()
	n2 := s.start("gw2", k2)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ok, why := n2.Ready()
		if ok {
			break
		}
		if why == "" {
			t.Fatal("not ready, and no reason given")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if k2.len() != total {
		t.Fatalf("gw2 ready holding %d of gw1's %d answers", k2.len(), total)
	}
}

// A node alone keeps serving and publishing (no majority needed), and
// when the peer returns the two converge, the newest expiry winning.
func TestPartitionConverges(t *testing.T) {
	s := newSite(t, "gw1", "gw2")
	k1, k2 := newKernel(), newKernel()
	n1, n2 := s.start("gw1", k1), s.start("gw2", k2)
	eventually(t, "both ready", func() bool { a, _ := n1.Ready(); b, _ := n2.Ready(); return a && b })

	n2.Close() // gw2 goes away
	now := time.Now()
	alone := rec("gw1", "alone.example", "198.51.100.3", now.Add(10*time.Minute))
	shared1 := rec("gw1", "shared.example", "198.51.100.4", now.Add(20*time.Minute))
	n1.Publish(alone, shared1)
	eventually(t, "gw1 to store while alone", func() bool { return testutil.ToFloat64(n1.m.published) == 2 })

	// gw2 comes back with its store; it had answered shared.example with
	// an earlier expiry, and gives one more answer.
	k2b := newKernel()
	n2 = s.start("gw2", k2b)
	shared2 := rec("gw2", "shared.example", "198.51.100.4", now.Add(5*time.Minute))
	later := rec("gw2", "later.example", "198.51.100.5", now.Add(10*time.Minute))
	n2.Publish(shared2, later)
	eventually(t, "gw2 caught up", func() bool { ok, _ := n2.Ready(); return ok })
	for _, r := range []Record{alone, shared1} {
		if _, ok := k2b.get(r); !ok {
			t.Fatalf("gw2 missed %s, published while it was away", r.Name)
		}
	}
	eventually(t, "gw1 to hold gw2's answers", func() bool { _, ok := k1.get(later); return ok })
	// Each kernel holds its own longer expiry: the fake keeps the newest.
	if got, _ := k1.get(shared2); got.Expires.Before(shared2.Expires.Truncate(time.Second)) {
		t.Fatalf("gw1 holds shared.example until %v", got.Expires)
	}
}

func TestRefusesWhatANodeCouldNotHaveSent(t *testing.T) {
	s := newSite(t, "gw1", "gw2")
	k1, k2 := newKernel(), newKernel()
	n1, n2 := s.start("gw1", k1), s.start("gw2", k2)
	eventually(t, "both ready", func() bool { a, _ := n1.Ready(); b, _ := n2.Ready(); return a && b })
	now := time.Now()
	forged := rec("gw3", "forged.example", "198.51.100.9", now.Add(time.Minute)) // in gw1's stream, another node's name
	future := rec("gw1", "future.example", "198.51.100.9", now.Add(48*time.Hour))
	denied := rec("gw1", "denied.example", "198.51.100.9", now.Add(time.Minute))
	good := rec("gw1", "good.example", "198.51.100.9", now.Add(time.Minute))
	for _, r := range []Record{forged, future, denied, good} {
		body, _ := Encode(r.Node, []Record{r})
		// Straight into gw1's stream, as a faulty node would write it.
		if _, err := n1.js.Publish(context.Background(), AnswersSubject("lab", "gw1"), body); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n1.js.Publish(context.Background(), AnswersSubject("lab", "gw1"), []byte(`{"v":1,"evil":true}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the good record", func() bool { _, ok := k2.get(good); return ok })
	eventually(t, "the refusals counted", func() bool {
		return testutil.ToFloat64(n2.m.refused.WithLabelValues("wrong-node")) == 1 &&
			testutil.ToFloat64(n2.m.refused.WithLabelValues("future")) == 1 &&
			testutil.ToFloat64(n2.m.refused.WithLabelValues("policy")) == 1 &&
			testutil.ToFloat64(n2.m.refused.WithLabelValues("malformed")) == 1
	})
	for _, r := range []Record{forged, future, denied} {
		if _, ok := k2.get(r); ok {
			t.Fatalf("gw2 applied %s", r.Name)
		}
	}
}

// A peer's credentials read a node's stream; they cannot write answers in
// its name, nor delete its stream.
func TestPeerCannotWrite(t *testing.T) {
	s := newSite(t, "gw1")
	n1 := s.start("gw1", newKernel())
	nc, err := nats.Connect("nats://"+s.addrs["gw1"].String(), nats.UserInfo(peerUser, "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	body, _ := Encode("gw1", []Record{rec("gw1", "evil.example", "198.51.100.66", time.Now().Add(time.Minute))})
	pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer pcancel()
	if _, err := js.Publish(pctx, AnswersSubject("lab", "gw1"), body); err == nil {
		t.Fatal("a peer wrote into gw1's stream")
	}
	dctx, dcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer dcancel()
	if err := js.DeleteStream(dctx, StreamName("lab", "gw1")); err == nil {
		t.Fatal("a peer deleted gw1's stream")
	}
	if _, err := js.Stream(context.Background(), StreamName("lab", "gw1")); err != nil {
		t.Fatalf("a peer cannot read gw1's stream info: %v", err)
	}
	// Nor put a message into an inbox, where a consumer would take it as
	// the stream's, nor listen on the node's own.
	violations := make(chan error, 8)
	nc2, err := nats.Connect("nats://"+s.addrs["gw1"].String(), nats.UserInfo(peerUser, "s3cret"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	for _, try := range []struct {
		what string
		do   func() error
	}{
		{"Publish to \"_INBOX.forged\"", func() error { return nc2.Publish("_INBOX.forged", body) }},
		{"Subscription to \"" + localInbox + ".>\"", func() error { _, err := nc2.SubscribeSync(localInbox + ".>"); return err }},
	} {
		if err := try.do(); err != nil {
			t.Fatal(err)
		}
		_ = nc2.Flush()
		select {
		case err := <-violations:
			if !strings.Contains(err.Error(), "Permissions Violation for "+try.what) {
				t.Errorf("%s: %v, want a permissions violation", try.what, err)
			}
		case <-ctx.Done():
			t.Fatalf("%s: a peer was let do it", try.what)
		}
	}
	if _, err := nats.Connect("nats://"+s.addrs["gw1"].String(), nats.UserInfo(peerUser, "wrong")); err == nil {
		t.Fatal("a wrong token was let in")
	}
	_ = n1
}

// A peer that restarts without its store makes its stream anew; the
// others read it again from the start.
func TestPeerStreamMadeAnew(t *testing.T) {
	s := newSite(t, "gw1", "gw2")
	s.stores["gw1"] = "" // memory
	k2 := newKernel()
	n1 := s.start("gw1", newKernel())
	n2 := s.start("gw2", k2)
	exp := time.Now().Add(time.Hour)
	n1.Publish(rec("gw1", "first.example", "198.51.100.1", exp))
	eventually(t, "first", func() bool { return k2.len() == 1 })
	n1.Close()
	n1 = s.start("gw1", newKernel())
	second := rec("gw1", "second.example", "198.51.100.2", exp)
	n1.Publish(second)
	eventually(t, "the answer of the restarted gw1", func() bool { _, ok := k2.get(second); return ok })
	_ = n2
}

// A fleet on one shared NATS system: every node writes its own stream
// there, follows the other nodes of its own site, and never another
// site's.
func TestSharedSystem(t *testing.T) {
	addr := freePort(t)
	srv, err := server.NewServer(&server.Options{Host: addr.Addr().String(), Port: int(addr.Port()), JetStream: true,
		StoreDir: t.TempDir(), Authorization: "fleet-token", NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server did not start")
	}
	t.Cleanup(srv.Shutdown)
	start := func(site, node string, k *kernel) *Node {
		c := Config{Site: site, Node: node, URLs: []string{"nats://" + addr.String()}, Token: "fleet-token",
			MaxLife: time.Hour, MaxEntries: 1000, CatchupTimeout: 2 * time.Second}
		n, err := Start(context.Background(), c, k, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Close)
		return n
	}
	kA1, kA2, kB1 := newKernel(), newKernel(), newKernel()
	a1 := start("berlin", "gw1", kA1)
	a2 := start("berlin", "gw2", kA2)
	b1 := start("oslo", "gw1", kB1)
	exp := time.Now().Add(time.Hour)
	fromA1 := rec("gw1", "a1.example", "198.51.100.1", exp)
	fromB1 := rec("gw1", "b1.example", "198.51.100.2", exp)
	// Publishing waits for each node's stream on the shared system.
	a1.Publish(fromA1)
	b1.Publish(fromB1)
	eventually(t, "berlin gw2 to hold berlin gw1's answer", func() bool { _, ok := kA2.get(fromA1); return ok })
	eventually(t, "both berlin nodes ready", func() bool { x, _ := a1.Ready(); y, _ := a2.Ready(); return x && y })
	eventually(t, "oslo's answer stored", func() bool { return testutil.ToFloat64(b1.m.published) == 1 })
	// a2 follows berlin's gw1 only; oslo's gw1 has the same node name and
	// is another site.
	if _, ok := kA2.get(fromB1); ok {
		t.Fatal("a berlin node applied oslo's answer")
	}
	if kB1.len() != 0 {
		t.Fatalf("oslo applied %d records of berlin's", kB1.len())
	}
	if st := a2.Status(); len(st.Peers) != 1 || st.Peers[0].Name != "nats" || len(st.Peers[0].Nodes) != 1 || st.Peers[0].Nodes[0] != "gw1" {
		t.Fatalf("berlin gw2's view: %+v", st)
	}
}
