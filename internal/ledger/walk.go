package ledger

import (
	"net/netip"
	"slices"
	"time"
)

// LiveAddr is one live entry as WalkLive shows it. Rules is the
// ledger's own interned list: read it during the call, never keep or
// change it.
type LiveAddr struct {
	Addr    netip.Addr
	Rules   []string
	Expires time.Time
}

// WalkLive calls fn for every entry of client group group that is live
// at now, without copying entries: what the firewall feeds are made of.
// fn runs under the ledger's lock and must only append or count. The
// slab is visited in chunks, letting go of the lock between them, so an
// entry written during the walk may be missed and one removed meanwhile
// may have been shown: a feed is a snapshot of a moving set either way.
func (l *Ledger) WalkLive(now time.Time, group string, fn func(LiveAddr)) {
	nowNS := now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	// The group's numbers, one per node that answered for it, are looked
	// up again after each pause: one may have been released and given to
	// another pair while the lock was free.
	var gids []uint32
	find := func() bool {
		gids = l.strs.groupIDs(group, gids[:0])
		return len(gids) > 0
	}
	if !find() {
		return
	}
	l.scanLocked(find, func(_ uint32, e *entry) {
		if slices.Contains(gids, e.group) && e.live(nowNS) {
			fn(LiveAddr{Addr: e.addr.addr(), Rules: l.strs.rules.get(e.rules), Expires: time.Unix(0, e.expires)})
		}
	})
}
