package ledger

import (
	"net/netip"
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
	// Looked up again after each pause: the group's number may have been
	// released and given to another while the lock was free.
	gid, ok := l.strs.groups.ids[group]
	if !ok {
		return
	}
	l.scanLocked(func() bool {
		gid, ok = l.strs.groups.ids[group]
		return ok
	}, func(_ uint32, e *entry) {
		if e.group == gid && e.live(nowNS) {
			fn(LiveAddr{Addr: e.addr.addr(), Rules: l.strs.rules.get(e.rules), Expires: time.Unix(0, e.expires)})
		}
	})
}
