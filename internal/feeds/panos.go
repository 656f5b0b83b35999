package feeds

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
)

// panosMaxTimeout caps a tag's timeout: the User-ID API takes seconds
// from 1 up to 2592000 (30 days); 0 would mean "never expires", which is
// never sent.
const panosMaxTimeout = 2592000

// panosResyncChunk bounds the entries of one resync request: the XML API
// takes POST bodies up to 5 MB, and an entry is about 150 bytes encoded.
const panosResyncChunk = 5000

// The PAN-OS User-ID XML API message ("Apply User-ID Mapping and Populate
// Dynamic Groups (API)", and api-lab "Register and Unregister - DAG
// Objects"): POST /api/?type=user-id, cmd=
//
//	<uid-message><type>update</type><payload><register>
//	  <entry ip="…"><tag><member timeout="S">TAG</member></tag></entry>
//	</register></payload></uid-message>
type uidMessage struct {
	XMLName xml.Name   `xml:"uid-message"`
	Type    string     `xml:"type"`
	Payload uidPayload `xml:"payload"`
}

type uidPayload struct {
	Register   *uidEntries `xml:"register,omitempty"`
	Unregister *uidEntries `xml:"unregister,omitempty"`
}

type uidEntries struct {
	Entry []uidEntry `xml:"entry"`
}

type uidEntry struct {
	IP  string    `xml:"ip,attr"`
	Tag uidTagSet `xml:"tag"`
	// Message is the firewall's word on this entry, in responses.
	Message string `xml:"message,attr,omitempty"`
}

type uidTagSet struct {
	Member []uidMember `xml:"member"`
}

type uidMember struct {
	Timeout int    `xml:"timeout,attr,omitempty"`
	Tag     string `xml:",chardata"`
}

// panosTimeout is an element's remaining lifetime in whole seconds,
// rounded up, within 1..panosMaxTimeout.
func panosTimeout(expires, now time.Time) int {
	s := int((expires.Sub(now) + time.Second - 1) / time.Second)
	return min(max(s, 1), panosMaxTimeout)
}

// panosRegister builds the uid-message registering entries, one <entry>
// per address with a member per tag, in address then tag order.
func panosRegister(entries []pushEntry, now time.Time) []byte {
	byAddr := map[netip.Addr][]uidMember{}
	for _, e := range entries {
		byAddr[e.Addr] = append(byAddr[e.Addr], uidMember{Timeout: panosTimeout(e.Expires, now), Tag: e.Tag})
	}
	addrs := make([]netip.Addr, 0, len(byAddr))
	for a := range byAddr {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	msg := uidMessage{Type: "update", Payload: uidPayload{Register: &uidEntries{Entry: make([]uidEntry, 0, len(addrs))}}}
	for _, a := range addrs {
		ms := byAddr[a]
		slices.SortFunc(ms, func(x, y uidMember) int { return strings.Compare(x.Tag, y.Tag) })
		msg.Payload.Register.Entry = append(msg.Payload.Register.Entry, uidEntry{IP: a.String(), Tag: uidTagSet{Member: ms}})
	}
	out, err := xml.Marshal(msg)
	if err != nil {
		panic(fmt.Sprintf("feeds: marshal uid-message: %v", err)) // strings and ints only: cannot fail
	}
	return out
}

// panosResponse is the XML API's answer: <response status="success|error"
// [code="403"]>, with <result><msg> or <msg><line> text, and for
// user-id requests the per-entry outcome under uid-response/payload.
type panosResponse struct {
	XMLName xml.Name `xml:"response"`
	Status  string   `xml:"status,attr"`
	Code    string   `xml:"code,attr"`
	Result  struct {
		Msg string       `xml:"msg"`
		UID *uidResponse `xml:"uid-response"`
	} `xml:"result"`
	Msg struct {
		Text  string      `xml:",chardata"`
		Lines []panosLine `xml:"line"`
	} `xml:"msg"`
}

type panosLine struct {
	Text string       `xml:",chardata"`
	UID  *uidResponse `xml:"uid-response"`
}

type uidResponse struct {
	Payload struct {
		Register   *uidEntries `xml:"register"`
		Unregister *uidEntries `xml:"unregister"`
	} `xml:"payload"`
}

// panosBenign are per-entry messages that are not failures: the tag was
// there already (its timeout is refreshed all the same).
var panosBenign = []string{"already exists", "ignore"}

// parsePanos reads a user-id response.
func parsePanos(code int, body []byte) pushResult {
	var r panosResponse
	xerr := xml.Unmarshal(body, &r)
	msg := firstNonEmpty(strings.TrimSpace(r.Result.Msg), strings.TrimSpace(r.Msg.Text), lineText(r.Msg.Lines))
	switch {
	case code == http.StatusForbidden || r.Code == "403" || code == http.StatusUnauthorized:
		return pushResult{kind: failAuth, msg: firstNonEmpty(msg, http.StatusText(code), "no message")}
	case code >= 500:
		return pushResult{kind: failTransient, msg: fmt.Sprintf("HTTP %d %s", code, firstNonEmpty(msg, http.StatusText(code), "no message"))}
	case code != http.StatusOK:
		return pushResult{kind: failHTTP, msg: fmt.Sprintf("HTTP %d %s", code, firstNonEmpty(msg, http.StatusText(code), "no message"))}
	case xerr != nil:
		return pushResult{kind: failHTTP, msg: "response is not PAN-OS XML: " + xerr.Error()}
	}
	var uids []*uidResponse
	if r.Result.UID != nil {
		uids = append(uids, r.Result.UID)
	}
	for _, l := range r.Msg.Lines {
		if l.UID != nil {
			uids = append(uids, l.UID)
		}
	}
	res := pushResult{}
	for _, u := range uids {
		for _, set := range []*uidEntries{u.Payload.Register, u.Payload.Unregister} {
			if set == nil {
				continue
			}
			for _, e := range set.Entry {
				if e.Message == "" || containsAny(e.Message, panosBenign) {
					continue
				}
				a, err := netip.ParseAddr(e.IP)
				if err != nil {
					continue
				}
				if res.failed == nil {
					res.failed = map[netip.Addr]string{}
				}
				res.failed[a] = e.Message
			}
		}
	}
	if r.Status != "success" && len(res.failed) == 0 && len(uids) == 0 {
		return pushResult{kind: failHTTP, msg: firstNonEmpty(msg, "status "+r.Status)}
	}
	return res
}

func lineText(ls []panosLine) string {
	var parts []string
	for _, l := range ls {
		if t := strings.TrimSpace(l.Text); t != "" {
			parts = append(parts, t)
		}
	}
	return strings.Join(parts, "; ")
}

func containsAny(s string, subs []string) bool {
	return slices.ContainsFunc(subs, func(sub string) bool { return strings.Contains(s, sub) })
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// panos speaks the User-ID XML API.
type panos struct {
	base string // https://host[:port]
	key  string
}

func (p panos) send(ctx context.Context, c *http.Client, entries []pushEntry, now time.Time) pushResult {
	body := url.Values{"cmd": {string(panosRegister(entries, now))}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/api/?type=user-id", strings.NewReader(body))
	if err != nil {
		return pushResult{kind: failHTTP, msg: err.Error()}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-PAN-KEY", p.key)
	return do(c, req, parsePanos)
}

// resync registers every live address again with its remaining timeout:
// tags a firewall lost while unreachable (a reboot, a failover) return,
// and a timeout cut short is set right.
func (p panos) resync(ctx context.Context, c *http.Client, live []pushEntry, _ []string, now time.Time) pushResult {
	if len(live) == 0 {
		// Still one request: it tells at the start whether the key works.
		return p.send(ctx, c, nil, now)
	}
	var res pushResult
	for chunk := range slices.Chunk(live, panosResyncChunk) {
		r := p.send(ctx, c, chunk, now)
		if r.kind != ok {
			return r
		}
		res.merge(r)
	}
	return res
}

// do sends req and parses the answer; network errors are transient.
func do(c *http.Client, req *http.Request, parse func(int, []byte) pushResult) pushResult {
	resp, err := c.Do(req)
	if err != nil {
		return pushResult{kind: failTransient, msg: err.Error()}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return pushResult{kind: failTransient, msg: "reading the response: " + err.Error()}
	}
	return parse(resp.StatusCode, bytes.TrimSpace(body))
}
