package feeds

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// The FortiOS 7.2.1+ threat feed push API ("Using the REST API to push
// updates to external threat feeds 7.2.1"): POST
// /api/v2/monitor/system/external-resource/dynamic with an API admin key
// as a Bearer token and
//
//	{"commands": [{"name": FEED, "command": "add"|"remove"|"snapshot", "entries": [...]}]}
//
// where snapshot replaces the feed's entries with those given.
type fortiRequest struct {
	Commands []fortiCommand `json:"commands"`
}

type fortiCommand struct {
	Name    string   `json:"name"`
	Command string   `json:"command"`
	Entries []string `json:"entries"`
}

// fortiResponse is the monitor API's envelope (status, http_status, and
// on failure error and a message); results, when the firewall lists the
// commands' outcomes, names those that failed.
type fortiResponse struct {
	Status     string `json:"status"`
	HTTPStatus int    `json:"http_status"`
	Error      any    `json:"error"`
	Message    string `json:"message"`
	CLIError   string `json:"cli_error"`
	Results    []struct {
		Name    string   `json:"name"`
		Status  string   `json:"status"`
		Message string   `json:"message"`
		Entries []string `json:"entries"`
	} `json:"results"`
}

// fortiCommands groups entries by feed name into one command each, feeds
// and entries sorted.
func fortiCommands(command string, entries []pushEntry, names []string) fortiRequest {
	byName := map[string][]netip.Addr{}
	for _, n := range names {
		byName[n] = nil
	}
	for _, e := range entries {
		byName[e.Tag] = append(byName[e.Tag], e.Addr)
	}
	keys := make([]string, 0, len(byName))
	for k := range byName {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	req := fortiRequest{Commands: make([]fortiCommand, 0, len(keys))}
	for _, k := range keys {
		addrs := sortAddrs(byName[k])
		cmd := fortiCommand{Name: k, Command: command, Entries: make([]string, len(addrs))}
		for i, a := range addrs {
			cmd.Entries[i] = a.String()
		}
		req.Commands = append(req.Commands, cmd)
	}
	return req
}

func parseFortigate(code int, body []byte) pushResult {
	var r fortiResponse
	jerr := json.Unmarshal(body, &r)
	msg := firstNonEmpty(r.Message, r.CLIError)
	if msg == "" && r.Error != nil {
		msg = fmt.Sprintf("error %v", r.Error)
	}
	switch {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return pushResult{kind: failAuth, msg: fmt.Sprintf("HTTP %d %s", code, firstNonEmpty(msg, http.StatusText(code), "no message"))}
	case code >= 500:
		return pushResult{kind: failTransient, msg: fmt.Sprintf("HTTP %d %s", code, firstNonEmpty(msg, http.StatusText(code), "no message"))}
	case code != http.StatusOK:
		return pushResult{kind: failHTTP, msg: fmt.Sprintf("HTTP %d %s", code, firstNonEmpty(msg, http.StatusText(code), "no message"))}
	case jerr != nil:
		return pushResult{kind: failHTTP, msg: "response is not FortiOS JSON: " + jerr.Error()}
	}
	res := pushResult{}
	for _, c := range r.Results {
		if c.Status == "" || c.Status == "success" {
			continue
		}
		for _, s := range c.Entries {
			if a, err := netip.ParseAddr(s); err == nil {
				if res.failed == nil {
					res.failed = map[netip.Addr]string{}
				}
				res.failed[a] = c.Name + ": " + firstNonEmpty(c.Message, c.Status)
			}
		}
		if len(c.Entries) == 0 {
			res.failedNames = append(res.failedNames, c.Name+": "+firstNonEmpty(c.Message, c.Status))
		}
	}
	if r.Status != "success" && len(res.failed) == 0 && len(res.failedNames) == 0 {
		return pushResult{kind: failHTTP, msg: firstNonEmpty(msg, "status "+r.Status)}
	}
	return res
}

// fortigate speaks the external-resource/dynamic API; Tag of an entry is
// its feed's name.
type fortigate struct {
	base string
	key  string
}

func (f fortigate) post(ctx context.Context, c *http.Client, req fortiRequest) pushResult {
	body, err := json.Marshal(req)
	if err != nil {
		return pushResult{kind: failHTTP, msg: err.Error()}
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, f.base+"/api/v2/monitor/system/external-resource/dynamic", bytes.NewReader(body))
	if err != nil {
		return pushResult{kind: failHTTP, msg: err.Error()}
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", "Bearer "+f.key)
	return do(c, r, parseFortigate)
}

func (f fortigate) send(ctx context.Context, c *http.Client, entries []pushEntry, _ time.Time) pushResult {
	return f.post(ctx, c, fortiCommands("add", entries, nil))
}

// resync replaces every feed's entries with its live addresses: a
// FortiGate feed has no per-entry timeout, so this is also how expired
// addresses leave it (see fortiRefresh).
func (f fortigate) resync(ctx context.Context, c *http.Client, live []pushEntry, names []string, _ time.Time) pushResult {
	return f.post(ctx, c, fortiCommands("snapshot", live, names))
}

// fortiName is a feed name as FortiOS takes it: no spaces.
func fortiName(s string) string { return strings.ReplaceAll(s, " ", "_") }
