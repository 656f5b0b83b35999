package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/fqdngate/fqdngate/internal/policy"
)

// Record is one ledger entry as it travels between nodes: one address
// told to one client for one name, by one node, until an absolute time.
type Record struct {
	Node   string
	Client netip.Addr
	Group  string
	Name   string
	// Chain is the CNAME targets from Name to Addr, in order.
	Chain []string
	Addr  netip.Addr
	TTL   time.Duration
	// Learnt is when the answering node recorded it; the replication lag
	// is measured from it (clocks are assumed NTP-synced).
	Learnt  time.Time
	Expires time.Time
}

// wire is the message body: JSON, so that `nats sub` shows it as it is.
type wire struct {
	V       int      `json:"v"`
	Node    string   `json:"node"`
	Client  string   `json:"client"`
	Group   string   `json:"group"`
	Name    string   `json:"name"`
	Chain   []string `json:"chain,omitempty"`
	Addr    string   `json:"addr"`
	TTL     int64    `json:"ttl_ms"`
	Learnt  int64    `json:"learnt_ms"`
	Expires int64    `json:"expires_ms"`
}

const wireVersion = 1

// Bounds of a decoded record: what no node of ours could have sent.
const (
	maxRecordBytes = 8 << 10
	maxChain       = 16
	maxGroupLen    = 64
)

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidToken reports whether s can be a site or node name: a NATS
// subject token and a part of a stream name.
func ValidToken(s string) bool { return tokenRE.MatchString(s) }

// Encode is the message body of r.
func Encode(r Record) ([]byte, error) {
	return json.Marshal(wire{V: wireVersion, Node: r.Node, Client: r.Client.String(), Group: r.Group, Name: r.Name,
		Chain: r.Chain, Addr: r.Addr.String(), TTL: r.TTL.Milliseconds(), Learnt: r.Learnt.UnixMilli(), Expires: r.Expires.UnixMilli()})
}

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed record")

// Decode reads a message body, refusing whatever a node could not have
// written: unknown fields, another version, names that are not
// normalised host names, addresses that do not parse, times that are not
// a lifetime.
func Decode(b []byte) (Record, error) {
	bad := func(why string, args ...any) (Record, error) {
		return Record{}, fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(why, args...))
	}
	if len(b) > maxRecordBytes {
		return bad("%d bytes, more than %d", len(b), maxRecordBytes)
	}
	var w wire
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return bad("%v", err)
	}
	if dec.More() {
		return bad("trailing data")
	}
	if w.V != wireVersion {
		return bad("version %d, this node reads %d", w.V, wireVersion)
	}
	if !ValidToken(w.Node) {
		return bad("node %q is not a node name", w.Node)
	}
	if len(w.Group) > maxGroupLen {
		return bad("group name longer than %d", maxGroupLen)
	}
	r := Record{Node: w.Node, Group: w.Group}
	var err error
	if r.Client, err = netip.ParseAddr(w.Client); err != nil || r.Client.Zone() != "" {
		return bad("client %q is not an address", w.Client)
	}
	if r.Addr, err = netip.ParseAddr(w.Addr); err != nil || r.Addr.Zone() != "" {
		return bad("addr %q is not an address", w.Addr)
	}
	r.Client, r.Addr = r.Client.Unmap(), r.Addr.Unmap()
	if n, ok := policy.NormalizeName(w.Name); !ok || n != w.Name {
		return bad("name %q is not a normalised host name", w.Name)
	}
	r.Name = w.Name
	if len(w.Chain) > maxChain {
		return bad("chain of %d names, more than %d", len(w.Chain), maxChain)
	}
	for _, c := range w.Chain {
		if n, ok := policy.NormalizeName(c); !ok || n != c {
			return bad("chain name %q is not a normalised host name", c)
		}
	}
	if len(w.Chain) > 0 {
		r.Chain = w.Chain
	}
	if w.TTL < 0 || w.Learnt <= 0 || w.Expires < w.Learnt || w.Expires > maxUnixMilli {
		return bad("ttl %d ms, learnt %d and expires %d (Unix ms) are not a lifetime", w.TTL, w.Learnt, w.Expires)
	}
	r.TTL = time.Duration(w.TTL) * time.Millisecond
	r.Learnt, r.Expires = time.UnixMilli(w.Learnt).UTC(), time.UnixMilli(w.Expires).UTC()
	return r, nil
}

// maxUnixMilli keeps times within what Unix nanoseconds in an int64 hold.
const maxUnixMilli = int64(1<<63-1) / int64(time.Millisecond)

// StreamName is the stream a node writes.
func StreamName(site, node string) string { return "FQDNGATE_" + site + "_" + node }

// streamPrefix is how a site's streams are told from others'.
func streamPrefix(site string) string { return "FQDNGATE_" + site + "_" }

// AnswersSubject is the subject tree of a node's answers.
func AnswersSubject(site, node string) string { return "fqdngate." + site + "." + node + ".answers" }

// DropsSubject is where a node publishes its explained drops (core NATS,
// not kept in a stream): a fleet's one view of what was blocked.
func DropsSubject(site, node string) string { return "fqdngate." + site + "." + node + ".drops" }

// subject is the record's own subject: the stream keeps the newest message
// of each, so it holds one message per live entry, as the ledger does.
// Subject tokens cannot hold '.' (a separator) nor, in NATS keys, ':';
// addresses are written with '-' for both, so that
// fqdngate.site.gw1.answers.192-0-2-10.> reads as one client's answers.
// The name goes in hashed: it may be 253 bytes and is full of dots.
func subject(site string, r Record) string {
	h := sha256.Sum256([]byte(r.Name))
	return AnswersSubject(site, r.Node) + "." + addrToken(r.Client) + "." + addrToken(r.Addr) + "." + hex.EncodeToString(h[:12])
}

func addrToken(a netip.Addr) string {
	return strings.NewReplacer(".", "-", ":", "-").Replace(a.String())
}
