package upstream

import (
	"errors"

	"github.com/miekg/dns"
)

// ErrNoUpstream is returned when every upstream failed; it wraps each
// upstream's error, prefixed with the upstream.
var ErrNoUpstream = errors.New("no upstream answered")

// rcodeError is a reply that is valid but no answer: the next upstream
// may do better.
type rcodeError int

func (e rcodeError) Error() string { return "answered " + dns.RcodeToString[int(e)] }

// transportError reports whether err says the upstream is unreachable or
// mute (health), as opposed to a valid reply that was not an answer. A
// SERVFAIL for one broken zone says nothing about the upstream.
func transportError(err error) bool {
	var re rcodeError
	return err != nil && !errors.As(err, &re)
}
