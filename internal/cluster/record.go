package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
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

// message is the body of one JetStream message: a batch of one node's
// records, in JSON, so that `nats sub` shows it as it is. A batch is what
// the publisher found queued at once: one record when the node is quiet,
// hundreds under load, so that storing them costs one message, not one a
// record.
type message struct {
	V       int          `json:"v"`
	Node    string       `json:"node"`
	Records []wireRecord `json:"records"`
}

type wireRecord struct {
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

// Bounds of a decoded message: what no node of ours could have sent.
const (
	maxMessageBytes = 512 << 10
	maxRecords      = 1024
	maxChain        = 16
	maxGroupLen     = 64
)

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidToken reports whether s can be a site or node name: a NATS
// subject token and a part of a stream name.
func ValidToken(s string) bool { return tokenRE.MatchString(s) }

// Encode is the message body of a node's records.
func Encode(node string, recs []Record) ([]byte, error) {
	m := message{V: wireVersion, Node: node, Records: make([]wireRecord, len(recs))}
	for i, r := range recs {
		m.Records[i] = wireRecord{Client: r.Client.String(), Group: r.Group, Name: r.Name, Chain: r.Chain, Addr: r.Addr.String(),
			TTL: r.TTL.Milliseconds(), Learnt: r.Learnt.UnixMilli(), Expires: r.Expires.UnixMilli()}
	}
	return json.Marshal(m)
}

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed message")

// Decode reads a message body, refusing whatever a node could not have
// written: unknown fields, another version, more records than a batch
// holds, names that are not normalised host names, addresses that do not
// parse, times that are not a lifetime. One bad record refuses the
// message: a node of ours writes none.
func Decode(b []byte) ([]Record, error) {
	bad := func(why string, args ...any) ([]Record, error) {
		return nil, fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(why, args...))
	}
	if len(b) > maxMessageBytes {
		return bad("%d bytes, more than %d", len(b), maxMessageBytes)
	}
	var m message
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return bad("%v", err)
	}
	if dec.More() {
		return bad("trailing data")
	}
	if m.V != wireVersion {
		return bad("version %d, this node reads %d", m.V, wireVersion)
	}
	if !ValidToken(m.Node) {
		return bad("node %q is not a node name", m.Node)
	}
	if len(m.Records) == 0 || len(m.Records) > maxRecords {
		return bad("%d records, want 1 to %d", len(m.Records), maxRecords)
	}
	out := make([]Record, len(m.Records))
	for i, w := range m.Records {
		r, err := decodeRecord(m.Node, w)
		if err != nil {
			return bad("record %d: %v", i, err)
		}
		out[i] = r
	}
	return out, nil
}

func decodeRecord(node string, w wireRecord) (Record, error) {
	if len(w.Group) > maxGroupLen {
		return Record{}, fmt.Errorf("group name longer than %d", maxGroupLen)
	}
	r := Record{Node: node, Group: w.Group}
	var err error
	if r.Client, err = netip.ParseAddr(w.Client); err != nil || r.Client.Zone() != "" {
		return Record{}, fmt.Errorf("client %q is not an address", w.Client)
	}
	if r.Addr, err = netip.ParseAddr(w.Addr); err != nil || r.Addr.Zone() != "" {
		return Record{}, fmt.Errorf("addr %q is not an address", w.Addr)
	}
	r.Client, r.Addr = r.Client.Unmap(), r.Addr.Unmap()
	if n, ok := policy.NormalizeName(w.Name); !ok || n != w.Name {
		return Record{}, fmt.Errorf("name %q is not a normalised host name", w.Name)
	}
	r.Name = w.Name
	if len(w.Chain) > maxChain {
		return Record{}, fmt.Errorf("chain of %d names, more than %d", len(w.Chain), maxChain)
	}
	for _, c := range w.Chain {
		if n, ok := policy.NormalizeName(c); !ok || n != c {
			return Record{}, fmt.Errorf("chain name %q is not a normalised host name", c)
		}
	}
	if len(w.Chain) > 0 {
		r.Chain = w.Chain
	}
	if w.TTL < 0 || w.Learnt <= 0 || w.Expires < w.Learnt || w.Expires > maxUnixMilli {
		return Record{}, fmt.Errorf("ttl %d ms, learnt %d and expires %d (Unix ms) are not a lifetime", w.TTL, w.Learnt, w.Expires)
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

// AnswersSubject is the subject of a node's answers.
func AnswersSubject(site, node string) string { return "fqdngate." + site + "." + node + ".answers" }

// DropsSubject is where a node publishes its explained drops (core NATS,
// not kept in a stream): a fleet's one view of what was blocked.
func DropsSubject(site, node string) string { return "fqdngate." + site + "." + node + ".drops" }
