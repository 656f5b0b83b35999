package feeds

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"slices"
	"strings"
)

// Feed names, as tokens list them and metrics label them.
const (
	FeedIP         = "ip"
	FeedDomain     = "domain"
	FeedCheckpoint = "checkpoint"
)

// Token lets one consumer read some feeds of some client groups.
type Token struct {
	// Name identifies the token in logs, never the secret.
	Name string
	// Secret is what the consumer sends.
	Secret string
	// Feeds and Clients are what it may read: feed names and group names.
	Feeds, Clients []string
}

// tokens checks credentials against every configured token.
type tokens struct {
	list []hashedToken
}

type hashedToken struct {
	Token
	sum [sha256.Size]byte
}

func newTokens(ts []Token) tokens {
	out := tokens{list: make([]hashedToken, len(ts))}
	for i, t := range ts {
		out.list[i] = hashedToken{t, sha256.Sum256([]byte(t.Secret))}
	}
	return out
}

// secretOf reads the credential of r: the password of HTTP Basic (any
// user name: PAN-OS and FortiGate send Basic with the user they were
// given) or a Bearer token.
func secretOf(r *http.Request) (string, bool) {
	if _, pass, ok := r.BasicAuth(); ok {
		return pass, pass != ""
	}
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// match returns the token whose secret is secret, or nil. Every token is
// compared, in constant time over hashes of equal length, so neither the
// time nor which comparison failed tells a guesser anything.
func (ts tokens) match(secret string) *Token {
	sum := sha256.Sum256([]byte(secret))
	var found *Token
	for i := range ts.list {
		if subtle.ConstantTimeCompare(sum[:], ts.list[i].sum[:]) == 1 {
			found = &ts.list[i].Token
		}
	}
	return found
}

// allows reports whether t may read feed of group.
func (t *Token) allows(feed, group string) bool {
	return slices.Contains(t.Feeds, feed) && slices.Contains(t.Clients, group)
}
