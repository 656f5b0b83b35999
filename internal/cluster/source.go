package cluster

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// source is one NATS server (a peer's embedded one) or system (shared)
// where other nodes' streams are found.
type source struct {
	n      *Node
	name   string
	conn   *nats.Conn
	shared bool // conn is the node's own (URLs): not closed with the source
	js     jetstream.JetStream

	mu        sync.Mutex
	listed    bool
	followers map[string]*follower
	wg        sync.WaitGroup
	failing   failure
}

// failure is what last went wrong with a source or follower, for the
// readiness reason; a failure is logged when it begins and when it
// ends, not at every retry.
type failure struct {
	mu  sync.Mutex
	msg string
}

func (f *failure) set(log *slog.Logger, what string, err error, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		if f.msg != "" {
			log.Info(what+": works again", args...)
		}
		f.msg = ""
		return
	}
	if f.msg == "" {
		log.Warn(what+": failing, retried", append(args, "err", err)...)
	}
	f.msg = err.Error()
}

func (f *failure) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.msg == "" {
		return ""
	}
	return " (last error: " + f.msg + ")"
}

func (n *Node) addSource(name string, nc *nats.Conn, shared bool) {
	js, _ := jetstream.New(nc) // fails only on options, and none are given
	n.sources = append(n.sources, &source{n: n, name: name, conn: nc, shared: shared, js: js, followers: map[string]*follower{}})
}

// run looks for the site's other streams until the node closes, and
// follows each it finds.
func (s *source) run() {
	defer s.n.wg.Done()
	defer s.wg.Wait()
	t := time.NewTicker(discoverEvery)
	defer t.Stop()
	for {
		if s.conn.IsConnected() {
			s.discover()
		}
		select {
		case <-s.n.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *source) discover() {
	ctx, cancel := context.WithTimeout(s.n.ctx, 2*time.Second)
	defer cancel()
	site, own := s.n.cfg.Site, StreamName(s.n.cfg.Site, s.n.cfg.Node)
	names := s.js.StreamNames(ctx, jetstream.WithStreamListSubject("fqdngate."+site+".*.answers"))
	var found []string
	for name := range names.Name() {
		found = append(found, name)
	}
	if err := names.Err(); err != nil {
		s.failing.set(s.n.log, "listing the site's streams", err, "source", s.name)
		return
	}
	s.failing.set(s.n.log, "listing the site's streams", nil, "source", s.name)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range found {
		node, ok := strings.CutPrefix(name, streamPrefix(site))
		if !ok || name == own || !ValidToken(node) || s.followers[name] != nil {
			continue
		}
		if len(s.followers) >= maxStreams {
			s.n.m.refused.WithLabelValues("too-many-nodes").Inc()
			continue
		}
		f := &follower{n: s.n, js: s.js, stream: name, node: node}
		s.followers[name] = f
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			f.run(s.n.ctx)
		}()
		s.n.log.Info("following a node's answers", "source", s.name, "peer", node)
	}
	s.listed = true
}

func (s *source) caughtUp() (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.listed {
		return false, "not reached yet" + s.failing.String()
	}
	for _, f := range s.followers {
		if !f.caughtUp() {
			return false, "reading " + f.node + "'s answers" + f.failing.String()
		}
	}
	return true, ""
}

func (s *source) stop() {
	if !s.shared {
		s.conn.Close()
	}
}

// follower reads one node's stream from its start and then its tail.
type follower struct {
	n      *Node
	js     jetstream.JetStream
	stream string
	node   string
	// self: this node's own stream, read back once at start.
	self bool

	delivered, processed atomic.Uint64
	sawEnd               atomic.Bool
	caught               atomic.Bool
	failing              failure
}

func (f *follower) done(k int) { f.processed.Add(uint64(k)) }

// live: records read after the catch-up are the tail, whose lag is a
// replication figure (those read during it are history).
func (f *follower) live() bool { return f.caught.Load() }

func (f *follower) caughtUp() bool {
	if f.caught.Load() {
		return true
	}
	if f.sawEnd.Load() && f.processed.Load() >= f.delivered.Load() {
		f.caught.Store(true)
		return true
	}
	return false
}

// checkEvery is how often a follower asks the server how much is left
// (catch-up) and whether its stream was made anew.
const checkEvery = 250 * time.Millisecond

// run follows the stream until ctx ends. A stream made anew (a peer that
// restarted without its store) is read again from its start: its
// sequence numbers began again.
func (f *follower) run(ctx context.Context) {
	if f.self {
		defer f.n.wg.Done()
	}
	for ctx.Err() == nil {
		err := f.follow(ctx)
		if ctx.Err() != nil || f.self && f.caughtUp() {
			return
		}
		if errors.Is(err, jetstream.ErrStreamNotFound) && f.self {
			f.sawEnd.Store(true) // nothing to read back
			return
		}
		f.failing.set(f.n.log, "following a stream", err, "stream", f.stream)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (f *follower) follow(ctx context.Context) error {
	st, err := f.js.Stream(ctx, f.stream)
	if err != nil {
		return err
	}
	info := st.CachedInfo()
	created := info.Created
	if info.State.Msgs == 0 {
		f.sawEnd.Store(true)
	}
	// This node's own stream is read back up to where it ended at start:
	// what it publishes from now on is in its kernel already.
	until := info.State.LastSeq
	cons, err := f.js.OrderedConsumer(ctx, f.stream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return err
	}
	var lastSeq atomic.Uint64
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		md, err := msg.Metadata()
		if err != nil {
			md = nil
		}
		if md != nil && f.self && md.Sequence.Stream > until {
			lastSeq.Store(md.Sequence.Stream)
			f.sawEnd.Store(true)
			return
		}
		recs, err := Decode(msg.Data())
		if err != nil {
			f.n.m.refused.WithLabelValues("malformed").Inc()
			f.n.log.Debug("a message refused", "stream", f.stream, "err", err)
		}
		// Counted delivered before the end is marked seen: Ready must not
		// find everything delivered applied while this message's records
		// are not yet counted.
		f.delivered.Add(uint64(len(recs)))
		if md != nil {
			lastSeq.Store(md.Sequence.Stream)
			if f.self && md.Sequence.Stream >= until {
				f.sawEnd.Store(true)
			}
		}
		for _, rec := range recs {
			select {
			case f.n.apply <- item{rec: rec, f: f}:
			case <-ctx.Done():
				return
			}
		}
		if md != nil && md.NumPending == 0 {
			f.sawEnd.Store(true)
		}
	})
	if err != nil {
		return err
	}
	defer cc.Stop()
	f.failing.set(f.n.log, "following a stream", nil, "stream", f.stream)
	closed := cc.Closed()
	t := time.NewTicker(checkEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-closed:
			return errors.New("consumer closed")
		case <-t.C:
		}
		if f.self && f.caughtUp() {
			return nil
		}
		if !f.caughtUp() {
			if ci, err := cons.Info(ctx); err == nil && ci.NumPending == 0 && ci.Delivered.Stream <= lastSeq.Load() {
				f.sawEnd.Store(true)
			}
		}
		if si, err := st.Info(ctx); errors.Is(err, jetstream.ErrStreamNotFound) {
			return err
		} else if err == nil && !si.Created.Equal(created) {
			f.n.log.Info("a node's stream was made anew; reading it from the start", "peer", f.node)
			return nil
		}
	}
}

// readOwn reads this node's own stream back once: the answers this node
// gave that its state file had not been written with when it stopped.
func (n *Node) readOwn() {
	n.own.js = n.js
	n.own.run(n.ctx)
}
