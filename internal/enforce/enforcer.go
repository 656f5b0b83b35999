package enforce

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/fqdngate/fqdngate/internal/ledger"
)

// Grant asks for an element to be allowed until Expires. It is the
// ledger's: what the ledger records of an answer is what is installed.
type Grant = ledger.Grant

// Spec is what the table is built from.
type Spec struct {
	// Table is the name of the inet table; nothing else is touched.
	Table string
	// Hook is "forward" (gateway) or "output" (the host is the client).
	Hook string
	// Global keys elements without the client address.
	Global bool
	// Observe logs and counts would-be drops but accepts them.
	Observe bool
	// Clients are the client networks whose traffic is checked and whose
	// DNS is redirected (hook forward).
	Clients []netip.Prefix
	// DNS4 and DNS6 are where clients' port-53 traffic is redirected to;
	// an unspecified address means "this host, on this port" (redirect).
	// Invalid means no redirect for that family.
	DNS4, DNS6 netip.AddrPort
	// NFLogGroup receives dropped packets.
	NFLogGroup uint16
	// Mark is on fqdngate's own traffic; hook output lets it pass.
	Mark uint32
	// GCInterval, when not zero, is how often the kernel collects the
	// sets' expired elements (its default is every second).
	GCInterval time.Duration
	// Static are the rules' static parts (static.go).
	Static []StaticRule
	// Verify is the kernel side of SNI and Host verification (verify.go).
	Verify VerifySpec
}

// Counters are the table's named counters, in packets.
type Counters struct {
	Drops        uint64
	WouldDrops   uint64
	DoTDrops     uint64
	DNSRedirects uint64
}

// Enforcer installs what answers allowed.
//
// Allow returns nil only after the kernel has acknowledged every grant
// (or already held it for at least as long). A non-nil error means the
// answer must not be released; ErrTableLost while the table is being
// restored after someone else changed it. The enforcer bounds the wait by its hold
// budget (enforcer.hold), and by ctx. It is safe for concurrent use.
type Enforcer interface {
	Allow(ctx context.Context, grants []Grant) error
	// Revoke removes elements now (evictions). Elements the kernel no
	// longer holds are ignored.
	Revoke(ctx context.Context, elems []ledger.Elem) error
	Counters() (Counters, error)
	Close() error
}

// Holder is an Enforcer that can tell at once, without waiting, that it
// already holds grants for at least as long as they ask. A repeated
// answer (a cached one, or a popular name another device asked) then
// needs no hold budget: the handler skips Allow, its timer and the wait
// (with backend none every grant is held, and no answer pays for them).
type Holder interface {
	Holds(grants []Grant) bool
}

// Errors callers branch on.
var (
	// ErrHoldTimeout: the kernel did not acknowledge within the hold budget.
	ErrHoldTimeout = errors.New("enforce: kernel did not acknowledge in time")
	// ErrClosed: the enforcer is shut down.
	ErrClosed = errors.New("enforce: closed")
	// ErrTableLost: someone else deleted or changed fqdngate's table; it
	// is being rebuilt, and until then nothing is installed.
	ErrTableLost = errors.New("enforce: table lost to another process's change; being restored")
)

// None is the enforcer of backend none: it allows everything and
// installs nothing.
type None struct{}

func (None) Allow(context.Context, []Grant) error        { return nil }
func (None) Holds([]Grant) bool                          { return true }
func (None) Revoke(context.Context, []ledger.Elem) error { return nil }
func (None) Counters() (Counters, error)                 { return Counters{}, nil }
func (None) Close() error                                { return nil }
