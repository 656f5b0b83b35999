package enforce

import (
	"context"

	"github.com/fqdngate/fqdngate/internal/ledger"
)

// AnswerAllower is an Enforcer that needs the whole answer, not only its
// grants: the client group and rules name what a firewall beside
// fqdngate is told (feeds.Hold). The handler calls AllowAnswer instead of
// Allow when its enforcer is one, with the same contract: nil only once
// everything the answer needs is in place, bounded by the hold budget.
// An answer comes in one or more parts (private addresses may be granted
// by other rules than the public ones); grants are all the parts'.
type AnswerAllower interface {
	AllowAnswer(ctx context.Context, grants []Grant, parts ...ledger.Answer) error
}
