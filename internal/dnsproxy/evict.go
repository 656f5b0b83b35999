package dnsproxy

import (
	"context"
	"time"

	"github.com/fqdngate/fqdngate/internal/ledger"
)

// laterRevoker is an enforcer that queues a removal without waiting for
// it (enforce.NFT).
type laterRevoker interface {
	RevokeLater(elems []ledger.Elem) bool
}

// revokeWait bounds the wait for the removal of evicted elements with an
// enforcer that cannot queue one: the query's answer is ready and must
// not wait for longer.
const revokeWait = 50 * time.Millisecond

// revokeEvicted removes the elements of entries an answer evicted from
// the ledger, without holding the query more than revokeWait. Elements
// not removed (a full queue, a slow kernel) are counted; they expire on
// their own, and established flows never depended on them.
func (h *Handler) revokeEvicted(ctx context.Context, revoke []ledger.Elem) {
	if lr, ok := h.enforcer.(laterRevoker); ok {
		if !lr.RevokeLater(revoke) {
			h.stats.RevokeDropped.Add(uint64(len(revoke)))
			h.log.Debug("evicted addresses not queued for removal; they expire on their own", "n", len(revoke))
		}
		return
	}
	ctx, cancel := context.WithTimeout(ctx, revokeWait)
	defer cancel()
	if err := h.enforcer.Revoke(ctx, revoke); err != nil {
		h.stats.RevokeDropped.Add(uint64(len(revoke)))
		h.log.Warn("evicted addresses not removed; they expire on their own", "n", len(revoke), "err", err)
	}
}
