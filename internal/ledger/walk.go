package ledger

import (
	"net/netip"
	"time"
)

// walkChunk bounds the slab slots one hold of the lock visits while
// WalkLive scans: the same reason and size as Select's selectChunk.
const walkChunk = selectChunk

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
	for start := uint32(0); start < uint32(l.slab.len()); start += walkChunk {
		if start > 0 {
			l.mu.Unlock()
			l.mu.Lock()
		}
		// Looked up again each chunk: the group's number may have been
		// released and given to another while the lock was free.
		gid, ok := l.strs.groups.ids[group]
		if !ok {
			return
		}
		end := min(start+walkChunk, uint32(l.slab.len()))
		for i := start; i < end; i++ {
			e := l.slab.at(i)
			if !e.used() || e.group != gid || !e.live(nowNS) {
				continue
			}
			fn(LiveAddr{Addr: e.addr.addr(), Rules: l.strs.rules.get(e.rules), Expires: time.Unix(0, e.expires)})
		}
	}
}
