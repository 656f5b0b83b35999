package enforce

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/fqdngate/fqdngate/internal/ledger"
)

// The table is fqdngate's promise to the devices: an answer released is
// an address the kernel lets through, and nothing else is. Someone else
// can break that promise behind fqdngate's back: `nft flush ruleset` (what
// `systemctl restart nftables` does with Debian's stock configuration)
// deletes the table, and the gateway forwards everything while answers
// keep coming. So the table is watched: every change to the nftables
// ruleset is announced on the NFNLGRP_NFTABLES multicast group, with the
// port ID of the socket that made it in every message's header, and a
// change to fqdngate's table from any socket but its own is tampering.
// On top of the events, the table's structure is compared with what was
// built every WatchInterval, for what the events cannot vouch for (a
// socket overrun, an event missed while subscribing).
//
// Tampering makes the table lost at once: Allow fails with ErrTableLost
// and Holds says no, so the DNS handler withholds every answer that needs
// an address (SERVFAIL). The writer then rebuilds the table from the
// live grants (the ledger's, and what it committed itself) in one
// transaction, and resumes. A failed rebuild stays lost and is retried
// with backoff.

// Tuning of the watch.
const (
	// WatchInterval is how often the table's structure (its chains, their
	// rules, its sets and counters) is compared with what was built.
	WatchInterval = time.Second
	// A rebuild that failed, or that someone interfered with again, is
	// retried after restoreBackoffMin, doubling up to restoreBackoffMax.
	restoreBackoffMin = 100 * time.Millisecond
	restoreBackoffMax = 5 * time.Second
	// eventBuffer is the event socket's receive buffer. The writer reads
	// the socket after every transaction, and the kernel filters out the
	// writer's own events (ownFilter), so it holds only other processes'
	// changes between two reads; an overrun anyway counts as tampering.
	eventBuffer = 8 << 20
	// maxOwnPorts bounds the remembered port IDs of short-lived sockets
	// fqdngate writes with (the gc-interval update of each rebuild).
	maxOwnPorts = 8
)

// ownPorts are the netlink port IDs of fqdngate's own sockets that write
// to the ruleset: the writer's, and the last few short-lived ones.
type ownPorts struct {
	mu     sync.RWMutex
	writer uint32   // the writer's lasting socket; 0 when Open did not dial it
	recent []uint32 // at most maxOwnPorts, oldest first
}

func (o *ownPorts) setWriter(c *netlink.Conn) error {
	o.mu.Lock()
	o.writer = c.PID()
	o.mu.Unlock()
	return nil
}

func (o *ownPorts) add(c *netlink.Conn) {
	o.mu.Lock()
	if len(o.recent) == maxOwnPorts {
		o.recent = slices.Delete(o.recent, 0, 1)
	}
	o.recent = append(o.recent, c.PID())
	o.mu.Unlock()
}

// replaceWriter makes p the writer's port; the old one stays own a while.
func (o *ownPorts) replaceWriter(p uint32) {
	o.mu.Lock()
	if len(o.recent) == maxOwnPorts {
		o.recent = slices.Delete(o.recent, 0, 1)
	}
	o.recent = append(o.recent, o.writer)
	o.writer = p
	o.mu.Unlock()
}

func (o *ownPorts) has(p uint32) bool {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return p != 0 && (p == o.writer || slices.Contains(o.recent, p))
}

func (o *ownPorts) writerPort() uint32 {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.writer
}

// watcher holds the event socket and the connection of the periodic
// check. mu serializes reading events with the transitions between lost
// and restored, so that an event is never read between the writer's last
// look and its clearing of the lost state.
type watcher struct {
	conn  *netlink.Conn
	raw   syscall.RawConn
	check *nftables.Conn // dumps only: reads cause no events
	mu    sync.Mutex
	buf   []byte // guarded by mu
	// overrun is set when a peek, not a read, met the socket's overrun
	// error: the kernel reports it once, to whichever call comes first.
	overrun atomic.Bool
}

// TamperStats counts the watch's findings since Open.
type TamperStats struct {
	// Detections: changes by others to the table found (each event or
	// failed check), and event overruns.
	Detections uint64
	// Restored: rebuilds after a loss that succeeded.
	Restored uint64
	// RestoreFailures: rebuilds after a loss that failed (retried).
	RestoreFailures uint64
	// Lost is true while answers are withheld until the table is back.
	Lost bool
}

// Watch subscribes to the ruleset's events and checks the table every
// WatchInterval until ctx ends; on a change by anyone else it restores
// the table from grants (the ledger's live grants) and what the writer
// committed. It needs the writer's socket to be Open's own (not
// WithConn), to tell fqdngate's changes from others'.
func (n *NFT) Watch(ctx context.Context, grants func() []Grant) error {
	own := n.ports.writerPort()
	if n.watch.Load() != nil {
		return errors.New("enforce: watch: already watching")
	}
	if own == 0 {
		return errors.New("enforce: watch: the netlink connection was given (WithConn); fqdngate's own changes cannot be told apart")
	}
	netns := n.netns
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return fmt.Errorf("enforce: watch: netlink: %w", err)
	}
	raw, err := conn.SyscallConn()
	if err == nil {
		err = conn.JoinGroup(unix.NFNLGRP_NFTABLES)
	}
	if err != nil {
		conn.Close()
		return fmt.Errorf("enforce: watch: subscribe to nftables events: %w", err)
	}
	// Neither is needed to be right: a smaller buffer overruns sooner (an
	// overrun counts as tampering), and without the filter the writer's
	// own events are read and told apart by port.
	if err := setRcvbufForce(raw, eventBuffer); err != nil {
		n.log.Warn("table watch: event socket keeps the default receive buffer", "err", err)
	}
	if err := conn.SetBPF(ownFilter(own)); err != nil {
		n.log.Warn("table watch: fqdngate's own events are not filtered in the kernel", "err", err)
	}
	check, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(netns))
	if err != nil {
		conn.Close()
		return fmt.Errorf("enforce: watch: netlink: %w", err)
	}
	w := &watcher{conn: conn, raw: raw, check: check, buf: make([]byte, 64<<10)}
	n.grantsOf = grants
	n.watch.Store(w)
	go n.readEvents(ctx, w)
	go func() {
		t := time.NewTicker(WatchInterval)
		defer t.Stop()
		// A change before the subscription has no event: check at once.
		for {
			n.checkTable(w)
			select {
			case <-ctx.Done():
				n.watch.Store(nil)
				conn.Close()
				check.CloseLasting()
				return
			case <-n.done:
				conn.Close()
				check.CloseLasting()
				return
			case <-t.C:
			}
		}
	}()
	return nil
}

// Lost reports whether the table is lost and answers are withheld.
func (n *NFT) Lost() bool { return n.lost.Load() }

// TamperStats returns the watch's counters.
func (n *NFT) TamperStats() TamperStats {
	return TamperStats{Detections: n.tamper.detections.Load(), Restored: n.tamper.restored.Load(),
		RestoreFailures: n.tamper.failures.Load(), Lost: n.lost.Load()}
}

// ownFilter is a socket filter that drops the writer's own events in the
// kernel: under load they are most of what the group carries, and the
// writer would read them all back. A transaction's changes share one
// port ID, so the first message's header tells for the whole datagram.
// nlmsg_pid is in host order; the filter loads it big endian.
func ownFilter(port uint32) []bpf.RawInstruction {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], port)
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: binary.BigEndian.Uint32(b[:]), SkipTrue: 1},
		bpf.RetConstant{Val: 0xffffffff},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		panic(err) // a fixed program
	}
	return prog
}

func setRcvbufForce(raw syscall.RawConn, size int) error {
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
	}); err != nil {
		return err
	}
	return serr
}

// readEvents reads events as they come when the writer does not. It
// waits for the socket to become readable without holding the lock and
// without consuming anything (MSG_PEEK), so that the writer can drain it
// in the meantime.
func (n *NFT) readEvents(ctx context.Context, w *watcher) {
	var one [1]byte
	for ctx.Err() == nil {
		err := w.raw.Read(func(fd uintptr) bool {
			_, _, err := unix.Recvfrom(int(fd), one[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			if errors.Is(err, unix.ENOBUFS) {
				w.overrun.Store(true)
			}
			return !errors.Is(err, unix.EAGAIN)
		})
		if err != nil {
			return // closed
		}
		w.mu.Lock()
		n.drainLocked(w)
		w.mu.Unlock()
	}
}

// pending reports whether events wait unread: the writer's own are
// filtered out in the kernel, so anything is someone else's change, or
// fqdngate's gc-interval update, and must be read before trusting the
// held map.
func (w *watcher) pending() bool {
	var one [1]byte
	ready := false
	// Control, not Read: Read holds the descriptor's read lock, which
	// readEvents holds while it waits.
	_ = w.raw.Control(func(fd uintptr) {
		_, _, err := unix.Recvfrom(int(fd), one[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if errors.Is(err, unix.ENOBUFS) {
			w.overrun.Store(true)
		}
		ready = !errors.Is(err, unix.EAGAIN)
	})
	return ready
}

// drainLocked reads every event queued and marks the table lost for each
// change to it by anyone else. w.mu is held.
func (n *NFT) drainLocked(w *watcher) {
	var found []string
	proc := ""
	if w.overrun.Swap(false) {
		found = append(found, "events lost (socket overrun)")
	}
	for {
		var nr int
		var rerr error
		err := w.raw.Control(func(fd uintptr) {
			nr, _, rerr = unix.Recvfrom(int(fd), w.buf, unix.MSG_DONTWAIT)
		})
		if err != nil || errors.Is(rerr, unix.EAGAIN) {
			break
		}
		if errors.Is(rerr, unix.ENOBUFS) {
			// Events were dropped: what they said cannot be known.
			found = append(found, "events lost (socket overrun)")
			continue
		}
		if rerr != nil || nr <= 0 {
			break
		}
		msgs, err := syscall.ParseNetlinkMessage(w.buf[:nr])
		if err != nil {
			found = append(found, "unparsable event")
			continue
		}
		for _, m := range msgs {
			if what, by, ok := n.foreign(m); ok {
				if what != "" {
					found = append(found, what)
				}
				if by != "" && len(found) > 0 {
					proc = by
				}
			}
		}
	}
	if len(found) > 0 {
		n.markLostLocked(strings.Join(compact(found), ", "), proc)
	}
}

// compact drops repeats (a flush deletes every rule and chain), keeping
// the first few distinct findings.
func compact(s []string) []string {
	var out []string
	for _, f := range s {
		if !slices.Contains(out, f) && len(out) < 6 {
			out = append(out, f)
		}
	}
	return out
}

// nftMsgNames names the message types a change to the table comes as.
var nftMsgNames = map[uint16]string{
	unix.NFT_MSG_NEWTABLE: "table changed", unix.NFT_MSG_DELTABLE: "table deleted",
	unix.NFT_MSG_NEWCHAIN: "chain changed", unix.NFT_MSG_DELCHAIN: "chain deleted",
	unix.NFT_MSG_NEWRULE: "rule added", unix.NFT_MSG_DELRULE: "rule deleted",
	unix.NFT_MSG_NEWSET: "set changed", unix.NFT_MSG_DELSET: "set deleted",
	unix.NFT_MSG_NEWSETELEM: "element added", unix.NFT_MSG_DELSETELEM: "element deleted",
	unix.NFT_MSG_NEWOBJ: "counter changed", unix.NFT_MSG_DELOBJ: "counter deleted",
	unix.NFT_MSG_NEWFLOWTABLE: "flowtable added", unix.NFT_MSG_DELFLOWTABLE: "flowtable deleted",
}

// foreign tells whether m is an nftables event from another socket. For a
// change to fqdngate's table it returns what was changed; for the
// generation message that ends a transaction, the process that made it.
func (n *NFT) foreign(m syscall.NetlinkMessage) (what, by string, ok bool) {
	if m.Header.Type>>8 != unix.NFNL_SUBSYS_NFTABLES || n.ports.has(m.Header.Pid) || len(m.Data) < 4 {
		return "", "", false
	}
	typ := m.Header.Type & 0xff
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return "", "", false
	}
	ad.ByteOrder = binary.BigEndian
	if typ == unix.NFT_MSG_NEWGEN {
		var pid uint32
		var comm string
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_GEN_PROC_PID:
				pid = ad.Uint32()
			case unix.NFTA_GEN_PROC_NAME:
				comm = ad.String()
			}
		}
		return "", fmt.Sprintf("%s (pid %d, netlink port %d)", comm, pid, m.Header.Pid), true
	}
	name, known := nftMsgNames[typ]
	if !known || m.Data[0] != byte(nftables.TableFamilyINet) {
		return "", "", false
	}
	// The table's name is attribute 1 of every object's message
	// (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, ...).
	for ad.Next() {
		if ad.Type() == 1 {
			if ad.String() == n.name {
				return name, "", true
			}
			return "", "", false
		}
	}
	return "", "", false
}

// markLostLocked enters the lost state (w.mu is held) and wakes the
// writer to restore the table.
func (n *NFT) markLostLocked(what, by string) {
	n.tamperSeq++
	n.tamper.detections.Add(1)
	if !n.lost.Swap(true) {
		n.lostAt = time.Now()
		n.log.Warn("fqdngate's nftables table was changed by someone else: answers that need an address are withheld (SERVFAIL) until it is rebuilt",
			"table", "inet "+n.name, "found", what, "by", by)
	} else {
		n.log.Warn("the table was changed again while being restored", "table", "inet "+n.name, "found", what, "by", by)
	}
	select {
	case n.tampered <- struct{}{}:
	default:
	}
}

// synced reads the events the kernel queued before the transaction the
// writer just committed (they are queued within the commit that made
// them, before its acknowledgement) and reports whether the table is
// still intact.
func (n *NFT) synced() bool {
	w := n.watch.Load()
	if w == nil {
		return !n.lost.Load()
	}
	w.mu.Lock()
	n.drainLocked(w)
	w.mu.Unlock()
	return !n.lost.Load()
}

// checkTable compares the table in the kernel with what the last rebuild
// built, and marks it lost when they differ or it is gone.
func (n *NFT) checkTable(w *watcher) {
	if n.lost.Load() {
		return
	}
	gen := n.snapGen.Load()
	if gen%2 == 1 {
		return // a rebuild is under way
	}
	n.tableMu.RLock()
	table, want := n.table, n.snap
	n.tableMu.RUnlock()
	got, err := readSnapshot(w.check, table)
	var diff string
	switch {
	case errors.Is(err, unix.ENOENT):
		diff = "table missing"
	case err != nil:
		// A dump interrupted by a concurrent change, or a busy netlink:
		// the next round tells (and the events do meanwhile).
		n.log.Debug("table check failed", "err", err)
		return
	default:
		diff = want.diff(got)
	}
	if diff == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if n.snapGen.Load() != gen || n.lost.Load() {
		return // rebuilt meanwhile: the dump may be of the old table
	}
	n.markLostLocked(diff, "periodic check")
}

// snapshot is the table's structure as read back from the kernel: chains
// (with hook, priority and policy) and the handles of their rules in
// order, sets and named objects. A rule deleted and added again, even
// the same, has a new handle.
type snapshot struct {
	chains map[string]string // name → "type hook prio policy | rule handles"
	sets   []string          // "name keytype flags", sorted
	objs   []string          // names, sorted
}

func readSnapshot(cc *nftables.Conn, t *nftables.Table) (snapshot, error) {
	s := snapshot{chains: map[string]string{}}
	if _, err := cc.ListTableOfFamily(t.Name, t.Family); err != nil {
		return s, fmt.Errorf("list table: %w", err)
	}
	chains, err := cc.ListChainsOfTableFamily(t.Family)
	if err != nil {
		return s, fmt.Errorf("list chains: %w", err)
	}
	for _, c := range chains {
		if c.Table.Name != t.Name {
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%s", c.Type)
		if c.Hooknum != nil {
			fmt.Fprintf(&b, " hook %d", *c.Hooknum)
		}
		if c.Priority != nil {
			fmt.Fprintf(&b, " prio %d", *c.Priority)
		}
		if c.Policy != nil {
			fmt.Fprintf(&b, " policy %d", *c.Policy)
		}
		rules, err := cc.GetRules(t, c)
		if err != nil {
			return s, fmt.Errorf("list rules of %s: %w", c.Name, err)
		}
		b.WriteString(" |")
		for _, r := range rules {
			fmt.Fprintf(&b, " %d", r.Handle)
		}
		s.chains[c.Name] = b.String()
	}
	sets, err := cc.GetSets(t)
	if err != nil {
		return s, fmt.Errorf("list sets: %w", err)
	}
	for _, set := range sets {
		s.sets = append(s.sets, fmt.Sprintf("%s %s timeout=%v interval=%v", set.Name, set.KeyType.Name, set.HasTimeout, set.Interval))
	}
	slices.Sort(s.sets)
	objs, err := cc.GetObjects(t)
	if err != nil {
		return s, fmt.Errorf("list counters: %w", err)
	}
	for _, o := range objs {
		if co, ok := o.(*nftables.CounterObj); ok {
			s.objs = append(s.objs, co.Name)
		}
	}
	slices.Sort(s.objs)
	return s, nil
}

// diff says how got differs from s ("" when it does not).
func (s snapshot) diff(got snapshot) string {
	if s.chains == nil {
		return "" // nothing read back after the build to compare with
	}
	var d []string
	for name, want := range s.chains {
		have, ok := got.chains[name]
		switch {
		case !ok:
			d = append(d, "chain "+name+" missing")
		case have != want:
			d = append(d, "chain "+name+" changed")
		}
	}
	for name := range got.chains {
		if _, ok := s.chains[name]; !ok {
			d = append(d, "chain "+name+" added")
		}
	}
	if !slices.Equal(s.sets, got.sets) {
		d = append(d, "sets changed")
	}
	if !slices.Equal(s.objs, got.objs) {
		d = append(d, "counters changed")
	}
	slices.Sort(d)
	return strings.Join(d, ", ")
}

// restore rebuilds a lost table. Only the writer calls it; it returns the
// time to retry after, zero when the table is back.
func (n *NFT) restore(backoff time.Duration) time.Duration {
	if n.beforeRestore != nil {
		n.beforeRestore()
	}
	w := n.watch.Load()
	var seq uint64
	if w != nil {
		w.mu.Lock()
		seq = n.tamperSeq
		w.mu.Unlock()
	}
	grants := n.restoreGrants()
	start := time.Now()
	if err := n.rebuild(n.spec, grants); err != nil {
		n.tamper.failures.Add(1)
		if rerr := n.redial(); rerr != nil {
			n.log.Error("netlink connection not renewed after a failed rebuild", "err", rerr)
		}
		next := min(max(2*backoff, restoreBackoffMin), restoreBackoffMax)
		n.log.Error("table not restored; answers that need an address stay withheld", "table", "inet "+n.name, "retry_in", next, "err", err)
		return next
	}
	if w != nil {
		w.mu.Lock()
		defer w.mu.Unlock()
		// Anything that came before our rebuild is read now; our own
		// rebuild's events are filtered out.
		n.drainLocked(w)
		if n.tamperSeq != seq {
			// Changed again while we rebuilt: back off, so that a loop
			// that keeps flushing does not keep the writer rebuilding.
			return min(max(2*backoff, restoreBackoffMin), restoreBackoffMax)
		}
	}
	n.lost.Store(false)
	select {
	case <-n.tampered:
	default:
	}
	n.tamper.restored.Add(1)
	n.log.Warn("fqdngate's nftables table restored; answers are released again",
		"table", "inet "+n.name, "grants", len(grants), "lost_for", time.Since(n.lostAt).Round(time.Millisecond),
		"rebuild", time.Since(start).Round(time.Microsecond))
	return 0
}

// redial replaces the writer's connection after a failed rebuild:
// google/nftables (v0.3.0) stops reading acknowledgements at "operation
// not permitted" and leaves the rest of the batch's on the socket, where
// every later transaction would read an earlier one's as its own. Only
// the writer calls it.
func (n *NFT) redial() error {
	if n.ports.writerPort() == 0 {
		return nil // a connection given (WithConn) is the caller's
	}
	var port uint32
	cc, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(n.netns),
		nftables.WithSockOptions(func(c *netlink.Conn) error { port = c.PID(); return nil }, bigBuffers))
	if err != nil {
		return fmt.Errorf("enforce: open netlink: %w", err)
	}
	n.ports.replaceWriter(port)
	if w := n.watch.Load(); w != nil {
		if err := w.conn.SetBPF(ownFilter(port)); err != nil {
			// The events are still told apart by port, only read back.
			n.log.Warn("event filter not renewed", "err", err)
		}
	}
	n.tableMu.Lock()
	old := n.cc
	n.cc = cc
	n.tableMu.Unlock()
	return old.CloseLasting()
}

// restoreGrants are the ledger's live grants and what the writer holds:
// an answer is recorded in the ledger only after Allow returned, so one
// released just before the loss may be held but not yet in the ledger.
func (n *NFT) restoreGrants() []Grant {
	var grants []Grant
	if n.grantsOf != nil {
		grants = n.grantsOf()
	}
	nowNS := n.now().UnixNano()
	for i := range n.held.shards {
		s := &n.held.shards[i]
		s.mu.RLock()
		for k, m := range s.m {
			if m.expires > nowNS {
				grants = append(grants, Grant{Elem: elemOf(k), Expires: time.Unix(0, m.expires)})
			}
		}
		s.mu.RUnlock()
	}
	return grants
}

// addrOf is the inverse of elemKey's address fields.
func addrOf(b [16]byte, fam uint8) netip.Addr {
	switch fam {
	case 4:
		return netip.AddrFrom16(b).Unmap()
	case 6:
		return netip.AddrFrom16(b)
	}
	return netip.Addr{}
}

// elemOf is the inverse of keyOf.
func elemOf(k elemKey) ledger.Elem {
	return ledger.Elem{Client: addrOf(k.client, k.kinds&0x0f), Addr: addrOf(k.addr, k.kinds>>4), Port: k.port}
}
