package enforce

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/fqdngate/fqdngate/internal/ledger"
)

// Under load the writer yields before a commit so that more answers join
// it (see writer). A request counts as under load when it came within
// closeGap of the last commit, or within busyGap of a commit that carried
// more than one request: answers arriving faster than one transaction
// each.
const (
	busyGap  = 200 * time.Microsecond
	closeGap = 50 * time.Microsecond
)

// underLoad reports whether a request that came gap after the last
// commit, which carried last requests, should wait for the answers behind
// it.
func underLoad(gap time.Duration, last int) bool {
	return gap < closeGap || gap < busyGap && last > 1
}

// Tuning of the writer. A transaction holds at most maxBatchElems
// elements so that it stays far below the netlink socket buffer (google/
// nftables issue 350); elements go maxMsgElems to a message so that one
// message stays under 64 KiB even for IPv6 range keys.
const (
	queueLen      = 1024
	maxBatchElems = 4096
	maxMsgElems   = 256
	heldGCEvery   = time.Minute
	heldShards    = 64
	heldKeep      = time.Minute
)

// NFT is the nftables Enforcer.
type NFT struct {
	spec  Spec
	cc    *nftables.Conn
	table *nftables.Table
	sets  map[string]*nftables.Set
	log   *slog.Logger
	now   func() time.Time
	// readdRefreshes: the kernel refreshes an element's timeout when it is
	// added again (Linux 6.12+). Older kernels keep the old expiry, so a
	// refresh there is add (to be sure it exists), delete, add.
	readdRefreshes bool
	initial        []Grant
	// held is the kernel's elements, their expiry and the timeout they
	// were given, as the writer committed them. Only the writer changes
	// it; every caller reads it. Entries stay a while after expiry
	// (heldKeep), because the kernel may still hold an expired element
	// it has not collected. One map serves both: at a million elements a
	// second copy for the writer would cost as much memory again, and a
	// map insert per element.
	held heldMap
	// slack: an element that already lives within slack of what an
	// answer asks for is not refreshed (see WithRefreshSlack).
	slack time.Duration
	// tableMu guards table and sets for readers other than the writer
	// (counters, element counts), which a rebuild replaces, and cc, which
	// a failed restore replaces (redial).
	tableMu sync.RWMutex

	// hold bounds how long Allow waits for the kernel (WithHold).
	hold time.Duration

	reqs chan *request
	done chan struct{}
	// stats counts the writer's work (WriterStats).
	stats struct {
		transactions, requests, elements atomic.Uint64
		commit                           durationHist
	}
	// scratch is the writer's, reused by every commit.
	scratch commitScratch

	// The watch (watch.go). ports are fqdngate's own sockets; netns is
	// where Open dials (WithNetNS). lost is set the moment someone else's
	// change to the table is seen and cleared by the writer once it is
	// rebuilt. tamperSeq and lostAt are guarded by the watcher's mu.
	ports     ownPorts
	name      string // the table's, fixed at Open (the watch reads it)
	netns     int
	watch     atomic.Pointer[watcher]
	lost      atomic.Bool
	tamperSeq uint64
	lostAt    time.Time
	tampered  chan struct{} // capacity 1: wakes the writer to restore
	grantsOf  func() []Grant
	// snap is what the last rebuild read back (under tableMu); snapGen is
	// odd while a rebuild is under way, so that a check does not compare
	// a dump of one table with the snapshot of the next.
	snap    snapshot
	snapGen atomic.Uint64
	tamper  struct{ detections, restored, failures atomic.Uint64 }
	// beforeRestore, when set (tests), runs in the writer before each
	// restoring rebuild.
	beforeRestore func()
}

type heldElem struct {
	expires int64 // Unix nanoseconds: no pointer in a map of millions
	timeout time.Duration
}

// timeoutStep is the least difference between an element's timeout and
// the one it is refreshed with. Linux (6.12+) updates an existing element
// only when it is given a timeout other than the one it holds, compared in
// jiffies (10 ms at HZ=100): refreshing with the same lifetime would leave
// the old expiry in place and drop the device's next connection.
const timeoutStep = 20 * time.Millisecond

type request struct {
	grants  []Grant
	revokes []ledger.Elem
	// rebuild, when set, replaces the table with this spec and exactly
	// the request's grants; it is committed on its own.
	rebuild *Spec
	result  chan error // buffered: the writer never blocks on a caller that gave up
}

// Option changes an NFT enforcer.
type Option func(*NFT)

// WithConn uses cc instead of a new netlink connection (tests dial into a
// network namespace or a fake).
func WithConn(cc *nftables.Conn) Option { return func(n *NFT) { n.cc = cc } }

// WithNetNS has Open dial its netlink connection into the network
// namespace fd (tests). Unlike WithConn, the table can then be watched.
func WithNetNS(fd int) Option { return func(n *NFT) { n.netns = fd } }

// WithLegacyRefresh forces the delete-and-add refresh that kernels before
// 6.12 need, to test it on newer kernels.
func WithLegacyRefresh() Option { return func(n *NFT) { n.readdRefreshes = false } }

// WithInitial has Open install grants in the same transaction that builds
// the table: a restart replaces the table and restores what the ledger
// holds atomically, with no moment in which a live answer is not enforced.
func WithInitial(grants []Grant) Option { return func(n *NFT) { n.initial = grants } }

// WithRefreshSlack lets an answer use an element that lives at least its
// lifetime minus d without refreshing it in the kernel. Cached answers ask
// for a few hundred milliseconds more each time (TTLs count down in whole
// seconds); without a slack each of them would be a netlink transaction.
// The gateway uses min(1s, grace/2), so the slack never eats the answer's
// TTL, only part of its grace.
func WithRefreshSlack(d time.Duration) Option { return func(n *NFT) { n.slack = d } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(n *NFT) { n.log = l } }

// WithHold bounds how long Allow waits for the kernel's acknowledgement:
// after d (DefaultHold unless set) it returns ErrHoldTimeout. Zero leaves
// only the caller's context to end the wait.
func WithHold(d time.Duration) Option { return func(n *NFT) { n.hold = d } }

// DefaultHold is the hold budget of an NFT opened without WithHold, the
// configuration's default (config.DefaultHold): an answer must not wait
// for a stuck kernel without end.
const DefaultHold = time.Second

// WithClock sets the clock used for timeouts.
func WithClock(now func() time.Time) Option { return func(n *NFT) { n.now = now } }

// Open builds the table (replacing an older one of the same name in one
// transaction) and starts the writer.
func Open(spec Spec, opts ...Option) (*NFT, error) {
	n := &NFT{
		spec:           spec,
		log:            slog.Default(),
		now:            time.Now,
		readdRefreshes: kernelRefreshesOnReadd(),
		hold:           DefaultHold,
		reqs:           make(chan *request, queueLen),
		done:           make(chan struct{}),
		tampered:       make(chan struct{}, 1),
		name:           spec.Table,
	}
	n.held.init()
	for _, o := range opts {
		o(n)
	}
	if n.cc == nil {
		cc, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(n.netns),
			nftables.WithSockOptions(n.ports.setWriter, bigBuffers))
		if err != nil {
			return nil, fmt.Errorf("enforce: open netlink: %w", err)
		}
		n.cc = cc
	}
	if err := n.rebuild(spec, n.initial); err != nil {
		return nil, err
	}
	n.initial = nil
	go n.writer()
	return n, nil
}

// rebuild replaces the table and installs grants in one transaction, and
// resets the held map to them. Only Open and the writer call it.
func (n *NFT) rebuild(spec Spec, grants []Grant) error {
	table := build(n.cc, spec)
	sets := make(map[string]*nftables.Set)
	for _, s := range allowSets(table, spec.Global) {
		sets[s.Name] = s
	}
	now := n.now()
	bySet := make(map[string][]nftables.SetElement)
	fresh := make(map[elemKey]heldElem, len(grants))
	for _, g := range grants {
		timeout := g.Expires.Sub(now).Truncate(time.Millisecond)
		if timeout < time.Millisecond {
			continue
		}
		k := keyOf(g.Elem)
		if m, ok := fresh[k]; ok && m.timeout >= timeout {
			continue
		}
		el, err := setElement(g.Elem, spec.Global)
		if err != nil {
			return err
		}
		el.Timeout = timeout
		bySet[setFor(g.Elem)] = append(bySet[setFor(g.Elem)], el)
		fresh[k] = heldElem{expires: now.Add(timeout).UnixNano(), timeout: timeout}
	}
	for name, els := range bySet {
		for len(els) > 0 {
			k := min(len(els), maxMsgElems)
			if err := n.cc.SetAddElements(sets[name], els[:k]); err != nil {
				return fmt.Errorf("enforce: encode set %s: %w", name, err)
			}
			els = els[k:]
		}
	}
	n.snapGen.Add(1) // odd: the table is being replaced
	defer n.snapGen.Add(1)
	if err := n.cc.Flush(); err != nil {
		return fmt.Errorf("enforce: create table inet %s: %w", spec.Table, err)
	}
	if spec.GCInterval > 0 {
		n.applyGCInterval(table, allowSets(table, spec.Global), spec.GCInterval)
	}
	// What the periodic check compares with (watch.go). Unread, the
	// check has nothing to compare and only the events watch.
	snap, err := readSnapshot(n.cc, table)
	if err != nil {
		n.log.Warn("table not read back after building it: only events watch it", "table", table.Name, "err", err)
	}
	n.tableMu.Lock()
	n.spec, n.table, n.sets, n.snap = spec, table, sets, snap
	n.tableMu.Unlock()
	n.held.reset(fresh)
	return nil
}

// applyGCInterval sets the sets' gc interval (see gcinterval.go). A
// failure costs CPU, not correctness, so it is logged, not returned: the
// table works with the kernel's default.
func (n *NFT) applyGCInterval(table *nftables.Table, sets []*nftables.Set, d time.Duration) {
	if err := setGCInterval(n.cc.NetNS, sets, d, n.ports.add); err != nil {
		n.log.Warn("sets keep the kernel's gc interval of 1s: every set is walked once a second", "table", table.Name, "err", err)
		return
	}
	got, err := gcIntervalOf(n.cc.NetNS, table, sets[0].Name)
	switch {
	case err != nil:
		n.log.Warn("gc interval of the sets not read back", "table", table.Name, "err", err)
	case got != d:
		n.log.Warn("the kernel kept its own gc interval (it applies a set's new gc interval from Linux 6.10 on): every set is walked once a second",
			"table", table.Name, "want", d, "have", got)
	}
}

// Holds implements Holder: the writer committed every grant, to live at
// least as long as it asks, less the refresh slack.
//
// While the table is lost it holds nothing. While someone else's change
// waits unread on the event socket it says no too, so that the answer
// goes through Allow and the writer, which reads it first.
func (n *NFT) Holds(grants []Grant) bool {
	if n.lost.Load() {
		return false
	}
	if w := n.watch.Load(); w != nil && w.pending() {
		return false
	}
	return n.held.covers(grants, n.slack)
}

// Allow implements Enforcer. It does not ask Holds first: the handler
// has (so that a repeated answer needs no hold budget), and a second
// look-up in a map of a million elements is a cache miss per answer.
// Grants the kernel already holds cost the writer no netlink message.
// The wait is bounded by the hold budget (WithHold) as well as by ctx.
func (n *NFT) Allow(ctx context.Context, grants []Grant) error {
	if n.lost.Load() {
		return ErrTableLost
	}
	return n.submit(ctx, &request{grants: grants, result: make(chan error, 1)}, n.hold)
}

// Revoke implements Enforcer.
func (n *NFT) Revoke(ctx context.Context, elems []ledger.Elem) error {
	if len(elems) == 0 {
		return nil
	}
	return n.submit(ctx, &request{revokes: elems, result: make(chan error, 1)}, 0)
}

// submit queues r and waits for the writer's result, at most budget when
// it is not zero. The budget's timer comes from a pool rather than from a
// context per answer: context.WithTimeout allocates a context, its Done
// channel and a timer for every answer.
func (n *NFT) submit(ctx context.Context, r *request, budget time.Duration) error {
	var expired <-chan time.Time // nil, never ready, without a budget
	if budget > 0 {
		t := holdTimers.Get().(*time.Timer)
		t.Reset(budget)
		defer func() {
			t.Stop() // since Go 1.23 a stopped timer delivers nothing stale
			holdTimers.Put(t)
		}()
		expired = t.C
	}
	select {
	case n.reqs <- r:
	case <-n.done:
		return ErrClosed
	case <-expired:
		return fmt.Errorf("%w: queue full after %s", ErrHoldTimeout, budget)
	case <-ctx.Done():
		return fmt.Errorf("%w: queue full: %w", ErrHoldTimeout, ctx.Err())
	}
	// When the wait ends early, the transaction may still land; that only
	// keeps an address open that the client was not told, for its
	// lifetime.
	select {
	case err := <-r.result:
		return err
	case <-n.done:
		return ErrClosed
	case <-expired:
		return fmt.Errorf("%w: no acknowledgement within %s", ErrHoldTimeout, budget)
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrHoldTimeout, ctx.Err())
	}
}

// holdTimers are stopped timers for submit's budget.
var holdTimers = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}}

// writer is the only goroutine that writes to the kernel. It takes one
// request, then whatever else is already queued, and commits them in one
// transaction (group commit: under load, many answers share one netlink
// round trip).
func (n *NFT) writer() {
	lastGC, gcShard := n.now(), 0
	var lastCommit time.Time // when the last transaction was acknowledged (wall clock)
	lastBatch := 0           // requests it carried
	// A lost table (watch.go) is restored here, by the only writer.
	// retry is set while a restore waits for its backoff: after a failed
	// one, or when the table is lost again soon after the last restore.
	// Something that keeps changing the table (a script flushing in a
	// loop, a second fqdngate on the same table) then costs a rebuild per
	// backoff, up to restoreBackoffMax, not one per change.
	var retry <-chan time.Time
	var backoff time.Duration // of failed restores
	var pause time.Duration   // before restoring a table lost again soon
	var restoredAt time.Time
	restore := func() {
		if backoff = n.restore(backoff); backoff > 0 {
			retry = time.After(backoff)
			return
		}
		retry, restoredAt = nil, time.Now()
	}
	lostAgain := func() {
		if time.Since(restoredAt) >= restoreBackoffMax {
			pause = 0
			restore()
			return
		}
		pause = min(max(2*pause, restoreBackoffMin), restoreBackoffMax)
		n.log.Warn("the table keeps being changed by someone else; restoring it after a pause", "table", "inet "+n.name, "pause", pause)
		retry = time.After(pause)
	}
	var errs []error // per request of a batch split after a failure
	for {
		var first *request
		select {
		case first = <-n.reqs:
		case <-n.tampered:
			if retry == nil && n.lost.Load() {
				lostAgain()
			}
			continue
		case <-retry:
			retry = nil
			if n.lost.Load() {
				restore()
			}
			continue
		case <-n.done:
			return
		}
		if n.lost.Load() {
			if n.whileLost(first) && retry == nil {
				// A reload rebuilt the table: restore from it at once.
				restore()
			}
			continue
		}
		if first.rebuild != nil {
			first.result <- n.rebuild(*first.rebuild, first.grants)
			continue
		}
		// Let the query goroutines that are ready run first: they are
		// likely to have answers for this same transaction. Without it
		// the writer, woken first by the scheduler, committed one answer
		// per netlink round trip under load. The yield costs the answer
		// that waits for it, so it yields only under load (underLoad): a
		// lone answer at a low rate is committed at once, and so is one
		// that merely came soon after a commit by chance, unless that
		// commit carried several requests (bench/README.md has the
		// measurements behind the two thresholds).
		if underLoad(time.Since(lastCommit), lastBatch) {
			runtime.Gosched()
		}
		batch := []*request{first}
		elems := len(first.grants) + len(first.revokes)
		var rebuild *request
	drain:
		for elems < maxBatchElems {
			select {
			case r := <-n.reqs:
				if r.rebuild != nil {
					rebuild = r // after this batch, on its own
					break drain
				}
				batch = append(batch, r)
				elems += len(r.grants) + len(r.revokes)
			default:
				break drain
			}
		}
		now := n.now()
		n.stats.requests.Add(uint64(len(batch)))
		err := n.commit(now, batch)
		errs = errs[:0]
		if err != nil && len(batch) > 1 {
			// One bad request must not fail the answers it shared a
			// transaction with: retry each on its own.
			for _, r := range batch {
				errs = append(errs, n.commit(now, []*request{r}))
			}
		}
		// An answer whose transaction raced with someone else's flush:
		// the kernel orders transactions, and queues each one's events
		// on the event socket within its commit, before it acknowledges
		// it. So when ours is acknowledged, the events of every change
		// committed before it are readable, and synced reads them. A
		// flush before our commit failed the commit (no table) or, if the
		// table came back under the same name, is found here: the
		// answers are withheld. A flush after it found a table with our
		// elements in it; those answers were true when the kernel took
		// them and are released, as they would be had the flush come a
		// moment after their release, and the restore puts their
		// elements back. Answers that never reach the writer (Holds) see
		// the lost flag, or unread events, and come here instead. So no
		// answer is released after fqdngate could know of the loss; what
		// is left is the few microseconds between this check (or Holds's)
		// and the handler's write.
		intact := n.synced()
		for i, r := range batch {
			e := err
			if len(errs) > 0 {
				e = errs[i]
			}
			if !intact && len(r.grants) > 0 {
				e = ErrTableLost
			}
			r.result <- e
		}
		clear(errs)
		lastCommit, lastBatch = time.Now(), len(batch)
		if rebuild != nil {
			rebuild.result <- n.rebuild(*rebuild.rebuild, rebuild.grants)
		}
		// A shard per heldGCEvery/heldShards (more if requests came
		// seldom), so that every shard is swept about once per
		// heldGCEvery: at a million elements a sweep of them all held
		// the writer, and every answer waiting for it, for tens of
		// milliseconds.
		if due := int(now.Sub(lastGC) / (heldGCEvery / heldShards)); due > 0 {
			for range min(due, heldShards) {
				n.held.dropBefore(gcShard, now.Add(-heldKeep).UnixNano())
				gcShard = (gcShard + 1) % heldShards
			}
			lastGC = now
		}
	}
}

// whileLost answers a request while the table is lost: grants fail (the
// answer is withheld), revocations only leave the held map (the restore
// then leaves them out), and a rebuild (reload) is done, with its spec
// for the restore. It reports whether it rebuilt the table.
func (n *NFT) whileLost(r *request) bool {
	switch {
	case r.rebuild != nil:
		err := n.rebuild(*r.rebuild, r.grants)
		r.result <- err
		return err == nil
	case len(r.grants) > 0:
		r.result <- ErrTableLost
	default:
		for _, e := range r.revokes {
			n.held.remove(keyOf(e))
		}
		r.result <- nil
	}
	return false
}

// commit writes a batch in one transaction and updates the held map when
// the kernel acknowledged it.
func (n *NFT) commit(now time.Time, batch []*request) error {
	sc := &n.scratch
	sc.reset()
	adds, dels, readds, updates, granted := sc.adds, sc.dels, sc.readds, sc.updates, sc.granted
	// granted is only needed when the batch revokes something.
	revoking := false
	for _, r := range batch {
		revoking = revoking || len(r.revokes) > 0
	}
	if revoking {
		for _, r := range batch {
			for _, g := range r.grants {
				granted[keyOf(g.Elem)] = true
			}
		}
	}
	nowNS := now.UnixNano()
	for _, r := range batch {
		for _, e := range r.revokes {
			k := keyOf(e)
			if m, ok := n.held.writerGet(k); !ok || nowNS >= m.expires || granted[k] {
				// Gone already (deleting it would fail the batch), or an
				// answer in this same batch needs it again.
				continue
			}
			el, err := setElement(e, n.spec.Global)
			if err != nil {
				return err
			}
			// Add first, so the delete cannot fail if the kernel aged the
			// element out a moment before our clock did.
			adds[setFor(e)] = append(adds[setFor(e)], el)
			dels[setFor(e)] = append(dels[setFor(e)], el)
			sc.removed = append(sc.removed, k)
		}
		for _, g := range r.grants {
			k := keyOf(g.Elem)
			have, known := n.held.writerGet(k)
			if known && have.expires >= g.Expires.Add(-n.slack).UnixNano() {
				continue // the kernel already holds it (nearly) that long
			}
			if u, ok := updates[k]; ok && u.expires >= g.Expires.UnixNano() {
				continue
			}
			timeout := g.Expires.Sub(now).Truncate(time.Millisecond)
			if timeout < time.Millisecond {
				continue // expired before it was written; nothing to allow
			}
			if u, ok := updates[k]; ok {
				have, known = u, true
			}
			if known && n.readdRefreshes {
				if d := timeout - have.timeout; d > -timeoutStep && d < timeoutStep {
					timeout = have.timeout + timeoutStep
				}
			}
			el, err := setElement(g.Elem, n.spec.Global)
			if err != nil {
				return err
			}
			el.Timeout = timeout
			set := setFor(g.Elem)
			if known && !n.readdRefreshes {
				// Older kernels keep the old expiry of an element that is
				// added again, live or expired and not yet collected:
				// add (so the delete cannot fail), delete, add.
				dels[set] = append(dels[set], el)
				readds[set] = append(readds[set], el)
			}
			adds[set] = append(adds[set], el)
			updates[k] = heldElem{expires: now.Add(timeout).UnixNano(), timeout: timeout}
		}
	}
	if sc.empty() {
		return nil
	}
	for _, phase := range []struct {
		m   map[string][]nftables.SetElement
		add bool
	}{{adds, true}, {dels, false}, {readds, true}} {
		for name, els := range phase.m {
			for len(els) > 0 {
				k := min(len(els), maxMsgElems)
				var err error
				if phase.add {
					err = n.cc.SetAddElements(n.sets[name], els[:k])
				} else {
					err = n.cc.SetDeleteElements(n.sets[name], els[:k])
				}
				if err != nil {
					return fmt.Errorf("enforce: encode set %s: %w", name, err)
				}
				els = els[k:]
			}
		}
	}
	t0 := time.Now()
	err := n.cc.Flush()
	n.stats.commit.observe(time.Since(t0))
	if err != nil {
		return fmt.Errorf("enforce: table inet %s: %w", n.spec.Table, err)
	}
	n.stats.transactions.Add(1)
	for _, m := range []map[string][]nftables.SetElement{adds, dels, readds} {
		for _, els := range m {
			n.stats.elements.Add(uint64(len(els)))
		}
	}
	for e, m := range updates {
		n.held.set(e, m)
	}
	for _, e := range sc.removed {
		n.held.remove(e)
	}
	return nil
}

// commitScratch is the writer's working memory for one transaction, kept
// from one to the next: made anew per commit, its maps and slices were a
// fifth of all the bytes allocated per query on the unique mix. Only the
// writer goroutine uses it. Its size is bounded by maxBatchElems.
type commitScratch struct {
	// adds, dels and readds hold the elements per set name.
	adds, dels, readds map[string][]nftables.SetElement
	updates            map[elemKey]heldElem
	granted            map[elemKey]bool
	removed            []elemKey
}

func (sc *commitScratch) reset() {
	if sc.updates == nil {
		*sc = commitScratch{adds: map[string][]nftables.SetElement{}, dels: map[string][]nftables.SetElement{},
			readds: map[string][]nftables.SetElement{}, updates: map[elemKey]heldElem{}, granted: map[elemKey]bool{}}
	}
	for _, m := range []map[string][]nftables.SetElement{sc.adds, sc.dels, sc.readds} {
		for k, v := range m {
			clear(v) // no keys kept alive from the last transaction
			m[k] = v[:0]
		}
	}
	clear(sc.updates)
	clear(sc.granted)
	sc.removed = sc.removed[:0]
}

func (sc *commitScratch) empty() bool {
	for _, m := range []map[string][]nftables.SetElement{sc.adds, sc.dels} {
		for _, v := range m {
			if len(v) > 0 {
				return false
			}
		}
	}
	return true
}

// Rebuild replaces the table (a new spec: other client networks, another
// mode) with exactly grants, in one transaction, between two batches of
// answers. Reload uses it; it is not for the query path.
func (n *NFT) Rebuild(ctx context.Context, spec Spec, grants []Grant) error {
	return n.submit(ctx, &request{rebuild: &spec, grants: grants, result: make(chan error, 1)}, 0)
}

// Counters implements Enforcer.
func (n *NFT) Counters() (Counters, error) {
	n.tableMu.RLock()
	table, cc := n.table, n.cc
	n.tableMu.RUnlock()
	objs, err := cc.GetObjects(table)
	if err != nil {
		return Counters{}, fmt.Errorf("enforce: read counters: %w", err)
	}
	var c Counters
	for _, o := range objs {
		co, ok := o.(*nftables.CounterObj)
		if !ok {
			continue
		}
		switch co.Name {
		case ctrDrops:
			c.Drops = co.Packets
		case ctrWouldDrops:
			c.WouldDrops = co.Packets
		case ctrDoTDrops:
			c.DoTDrops = co.Packets
		case ctrDNSRedirects:
			c.DNSRedirects = co.Packets
		}
	}
	return c, nil
}

// Close stops the writer. The table and its elements stay in the kernel:
// existing flows and unexpired answers keep working while fqdngate is
// down (fail closed for new names). Teardown removes them.
func (n *NFT) Close() error {
	select {
	case <-n.done:
		return nil
	default:
	}
	close(n.done)
	n.tableMu.RLock()
	cc := n.cc
	n.tableMu.RUnlock()
	return cc.CloseLasting()
}

// Teardown deletes fqdngate's table, and only it. A missing table is not
// an error.
func Teardown(table string, cc *nftables.Conn) error {
	if cc == nil {
		var err error
		if cc, err = nftables.New(); err != nil {
			return fmt.Errorf("teardown: open netlink: %w", err)
		}
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: table}
	cc.DelTable(t)
	if err := cc.Flush(); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("teardown: delete table inet %s: %w", table, err)
	}
	return nil
}

// kernelRefreshesOnReadd reports whether this kernel (6.12 or later)
// refreshes a set element's timeout when the element is added again.
func kernelRefreshesOnReadd() bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	return releaseAtLeast(unix.ByteSliceToString(u.Release[:]), 6, 12)
}

func releaseAtLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	digits := parts[1]
	if i := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		digits = digits[:i]
	}
	mi, err2 := strconv.Atoi(digits)
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// Elements counts the elements fqdngate has committed that have not
// expired. It reads fqdngate's own record of the sets, not the kernel:
// listing a set of hundreds of thousands of elements at every scrape
// took seconds.
func (n *NFT) Elements() (int, error) {
	return n.held.live(n.now()), nil
}

// WriterStats counts what the writer did since Open: requests handled
// (answers and revocations), netlink transactions committed for them, and
// element writes in those (adds and deletes). requests/transactions is
// how many answers share a transaction under load.
type WriterStats struct {
	Requests, Transactions, Elements uint64
	// Commit is how long the kernel took to take each transaction (the
	// netlink send and its acknowledgements): the kernel's part of
	// answer→kernel, apart from the wait for the writer.
	Commit Histogram
}

// WriterStats returns the writer's counters.
func (n *NFT) WriterStats() WriterStats {
	return WriterStats{Requests: n.stats.requests.Load(), Transactions: n.stats.transactions.Load(), Elements: n.stats.elements.Load(),
		Commit: n.stats.commit.snapshot()}
}

// Histogram is a snapshot of durations in fixed buckets: Counts[i] is how
// many were at most Bounds[i] seconds (and above the bound before); the
// ones above the last bound count only in Count and Sum.
type Histogram struct {
	Bounds []float64
	Counts []uint64
	Count  uint64
	Sum    float64 // seconds
}

// commitBounds run from 10 µs to 1.3 s, each twice the one before.
var commitBounds = func() []float64 {
	var b []float64
	for v := 10e-6; v < 1.5; v *= 2 {
		b = append(b, v)
	}
	return b
}()

// durationHist counts durations without a lock (the writer observes,
// scrapes read).
type durationHist struct {
	counts [32]atomic.Uint64
	count  atomic.Uint64
	sumNS  atomic.Uint64
}

func (h *durationHist) observe(d time.Duration) {
	s := d.Seconds()
	for i, b := range commitBounds {
		if s <= b {
			h.counts[i].Add(1)
			break
		}
	}
	h.count.Add(1)
	h.sumNS.Add(uint64(max(d, 0)))
}

func (h *durationHist) snapshot() Histogram {
	out := Histogram{Bounds: commitBounds, Counts: make([]uint64, len(commitBounds)),
		Count: h.count.Load(), Sum: float64(h.sumNS.Load()) / 1e9}
	for i := range commitBounds {
		out.Counts[i] = h.counts[i].Load()
	}
	return out
}

// heldMap is a sharded map of committed elements, their expiry and
// timeout. The writer is its only writer and changes it under a shard's
// lock; every other goroutine reads under the read lock. Open makes its
// maps (init).
type heldMap struct {
	shards [heldShards]struct {
		mu sync.RWMutex
		m  map[elemKey]heldElem
	}
}

func (h *heldMap) shard(e elemKey) int {
	return int(e.addr[15]^e.addr[14]^byte(e.port.Lo)) % len(h.shards)
}

func (h *heldMap) init() {
	for i := range h.shards {
		h.shards[i].m = make(map[elemKey]heldElem)
	}
}

// writerGet reads without the lock: only the writer goroutine may call it,
// and no one else writes.
func (h *heldMap) writerGet(e elemKey) (heldElem, bool) {
	m, ok := h.shards[h.shard(e)].m[e]
	return m, ok
}

func (h *heldMap) set(e elemKey, m heldElem) {
	s := &h.shards[h.shard(e)]
	s.mu.Lock()
	s.m[e] = m
	s.mu.Unlock()
}

func (h *heldMap) remove(e elemKey) {
	s := &h.shards[h.shard(e)]
	s.mu.Lock()
	delete(s.m, e)
	s.mu.Unlock()
}

// dropBefore forgets shard i's elements that expired before cutoff (Unix
// ns).
func (h *heldMap) dropBefore(i int, cutoff int64) {
	s := &h.shards[i]
	s.mu.Lock()
	for e, m := range s.m {
		if m.expires < cutoff {
			delete(s.m, e)
		}
	}
	s.mu.Unlock()
}

func (h *heldMap) reset(m map[elemKey]heldElem) {
	for i := range h.shards {
		h.shards[i].mu.Lock()
		clear(h.shards[i].m)
		h.shards[i].mu.Unlock()
	}
	for e, v := range m {
		h.set(e, v)
	}
}

// covers reports whether every grant is already held at least as long as
// it asks, less slack.
func (h *heldMap) covers(grants []Grant, slack time.Duration) bool {
	for _, g := range grants {
		k := keyOf(g.Elem)
		s := &h.shards[h.shard(k)]
		s.mu.RLock()
		m, ok := s.m[k]
		s.mu.RUnlock()
		if !ok || m.expires < g.Expires.Add(-slack).UnixNano() {
			return false
		}
	}
	return true
}

// live counts the held elements that expire after now.
func (h *heldMap) live(now time.Time) int {
	total, nowNS := 0, now.UnixNano()
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.RLock()
		for _, m := range s.m {
			if m.expires > nowNS {
				total++
			}
		}
		s.mu.RUnlock()
	}
	return total
}
