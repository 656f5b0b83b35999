package feedstest

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Registration is one address a fake firewall holds for one tag (PAN-OS)
// or feed (FortiGate).
type Registration struct {
	Tag  string
	Addr netip.Addr
	// Timeout is the PAN-OS tag timeout in seconds (0 for FortiGate).
	Timeout int
	At      time.Time
}

// Fake is what both fakes share: the key they take, the registrations
// they hold, and the behaviour tests switch.
type Fake struct {
	Key string

	mu sync.Mutex
	// regs is tag → address → latest registration.
	regs map[string]map[netip.Addr]Registration
	// requests counts requests, refused ones included; bodies are the
	// raw bodies in order (bounded by what a test sends).
	requests int
	bodies   [][]byte
	// hang makes every request wait until released (a hung firewall).
	hang chan struct{}
	// refuse are addresses refused with a per-entry error.
	refuse map[netip.Addr]string
	// snapshots counts FortiGate snapshot commands.
	snapshots int
}

func newFake(key string) Fake {
	return Fake{Key: key, regs: map[string]map[netip.Addr]Registration{}, refuse: map[netip.Addr]string{}}
}

// Hang makes requests wait until Release.
func (f *Fake) Hang() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hang == nil {
		f.hang = make(chan struct{})
	}
}

// Release ends a Hang.
func (f *Fake) Release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hang != nil {
		close(f.hang)
		f.hang = nil
	}
}

// Refuse makes the fake refuse addr with a per-entry error.
func (f *Fake) Refuse(addr netip.Addr, msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refuse[addr] = msg
}

// SetKey changes the key the fake accepts.
func (f *Fake) SetKey(k string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Key = k
}

// Requests is how many requests arrived.
func (f *Fake) Requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

// Bodies are the raw request bodies, in order.
func (f *Fake) Bodies() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.bodies...)
}

// Snapshots is how many FortiGate snapshot commands arrived.
func (f *Fake) Snapshots() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snapshots
}

// Lookup returns the registration of addr under tag.
func (f *Fake) Lookup(tag string, addr netip.Addr) (Registration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.regs[tag][addr]
	return r, ok
}

// Tagged lists the addresses held under tag.
func (f *Fake) Tagged(tag string) []netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netip.Addr
	for a := range f.regs[tag] {
		out = append(out, a)
	}
	return out
}

// Clear forgets every registration (a firewall that rebooted).
func (f *Fake) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.regs)
}

// enter counts a request and waits out a hang.
func (f *Fake) enter(r *http.Request, body []byte) bool {
	f.mu.Lock()
	f.requests++
	f.bodies = append(f.bodies, body)
	hang := f.hang
	f.mu.Unlock()
	if hang != nil {
		select {
		case <-hang:
		case <-r.Context().Done():
			return false
		}
	}
	return true
}

// PANOS is a fake PAN-OS XML API. It follows "Apply User-ID Mapping and
// Populate Dynamic Groups (API)" (POST /api/?type=user-id, the key in
// X-PAN-KEY or key=, the uid-message in cmd=) and api-lab's "Register and
// Unregister - DAG Objects" (register/unregister, per-member timeout
// 1..2592000 s). A wrong key gets HTTP 403 with the XML API's
// <response status="error" code="403"><result><msg>Invalid
// Credential</msg></result></response>; a refused entry gets status
// error with <msg><line><uid-response>…<entry ip= message=/>; success is
// <response status="success"><result><uid-response>….
type PANOS struct {
	Fake
}

// NewPANOS makes a fake PAN-OS that takes key.
func NewPANOS(key string) *PANOS { return &PANOS{newFake(key)} }

type uidMessage struct {
	Type    string `xml:"type"`
	Payload struct {
		Register   *uidEntries `xml:"register"`
		Unregister *uidEntries `xml:"unregister"`
	} `xml:"payload"`
}

type uidEntries struct {
	Entry []struct {
		IP  string `xml:"ip,attr"`
		Tag struct {
			Member []struct {
				Timeout string `xml:"timeout,attr"`
				Tag     string `xml:",chardata"`
			} `xml:"member"`
		} `xml:"tag"`
	} `xml:"entry"`
}

const panosMaxTimeout = 2592000

func (p *PANOS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/xml; charset=UTF-8")
	if r.Method != http.MethodPost || r.URL.Path != "/api/" || r.URL.Query().Get("type") != "user-id" {
		http.Error(w, `<response status="error" code="400"><result><msg>Bad request</msg></result></response>`, http.StatusBadRequest)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, `<response status="error"><msg>cannot read the request</msg></response>`, http.StatusBadRequest)
		return
	}
	cmd := r.PostForm.Get("cmd")
	if !p.enter(r, []byte(cmd)) {
		return
	}
	key := r.Header.Get("X-PAN-KEY")
	if key == "" {
		key = r.FormValue("key")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if key != p.Key {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `<response status = 'error' code = '403'><result><msg>Invalid Credential</msg></result></response>`)
		return
	}
	var m uidMessage
	if err := xml.Unmarshal([]byte(cmd), &m); err != nil || m.Type != "update" {
		fmt.Fprintf(w, `<response status="error"><msg><line>%s</line></msg></response>`, xmlText("invalid uid-message"))
		return
	}
	var refused []string
	now := time.Now()
	if m.Payload.Register != nil {
		for _, e := range m.Payload.Register.Entry {
			addr, err := netip.ParseAddr(e.IP)
			if err != nil {
				refused = append(refused, entryXML(e.IP, "invalid ip address"))
				continue
			}
			if msg, bad := p.refuse[addr]; bad {
				refused = append(refused, entryXML(e.IP, msg))
				continue
			}
			for _, mem := range e.Tag.Member {
				t, err := strconv.Atoi(mem.Timeout)
				if mem.Timeout != "" && (err != nil || t < 0 || t > panosMaxTimeout) {
					refused = append(refused, entryXML(e.IP, "invalid timeout "+mem.Timeout))
					continue
				}
				if p.regs[mem.Tag] == nil {
					p.regs[mem.Tag] = map[netip.Addr]Registration{}
				}
				p.regs[mem.Tag][addr] = Registration{Tag: mem.Tag, Addr: addr, Timeout: t, At: now}
			}
		}
	}
	if m.Payload.Unregister != nil {
		for _, e := range m.Payload.Unregister.Entry {
			if addr, err := netip.ParseAddr(e.IP); err == nil {
				for _, mem := range e.Tag.Member {
					delete(p.regs[mem.Tag], addr)
				}
			}
		}
	}
	if len(refused) > 0 {
		fmt.Fprintf(w, `<response status="error"><msg><line><uid-response><version>2.0</version><payload><register>%s</register></payload></uid-response></line></msg></response>`,
			joinStrings(refused))
		return
	}
	fmt.Fprint(w, `<response status="success"><result><uid-response><version>2.0</version><payload><register></register></payload></uid-response></result></response>`)
}

func entryXML(ip, msg string) string {
	return `<entry ip="` + xmlText(ip) + `" message="` + xmlText(msg) + `"/>`
}

func xmlText(s string) string {
	var b []byte
	w := &byteWriter{&b}
	_ = xml.EscapeText(w, []byte(s))
	return string(b)
}

type byteWriter struct{ b *[]byte }

func (w *byteWriter) Write(p []byte) (int, error) { *w.b = append(*w.b, p...); return len(p), nil }

func joinStrings(ss []string) string {
	var out string
	for _, s := range ss {
		out += s
	}
	return out
}

// FortiGate is a fake FortiOS 7.2.1+ REST API. It follows "Using the REST
// API to push updates to external threat feeds 7.2.1": POST
// /api/v2/monitor/system/external-resource/dynamic, the API key as
// "Authorization: Bearer", {"commands": [{"name", "command": add | remove
// | snapshot, "entries"}]}, snapshot replacing the feed. It answers with
// the monitor API's envelope ({"http_method", "status", "http_status",
// "vdom", "path", "name", "action", "serial", "version", "build"}); a
// wrong key gets HTTP 401. Feeds must exist (Feeds) as on a FortiGate,
// where the threat feed is configured with update method Push API; a
// command for another is refused in results with its entries.
type FortiGate struct {
	Fake
	feeds map[string]bool
}

// NewFortiGate makes a fake FortiGate taking key with the named feeds.
func NewFortiGate(key string, feeds ...string) *FortiGate {
	f := &FortiGate{Fake: newFake(key), feeds: map[string]bool{}}
	for _, n := range feeds {
		f.feeds[n] = true
	}
	return f
}

type fortiRequest struct {
	Commands []struct {
		Name    string   `json:"name"`
		Command string   `json:"command"`
		Entries []string `json:"entries"`
	} `json:"commands"`
}

type fortiResult struct {
	Name    string   `json:"name"`
	Status  string   `json:"status"`
	Message string   `json:"message,omitempty"`
	Entries []string `json:"entries,omitempty"`
}

func (f *FortiGate) envelope(w http.ResponseWriter, code int, status string, results []fortiResult) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"http_method": "POST", "results": results, "vdom": "root", "path": "system", "name": "external-resource",
		"action": "dynamic", "status": status, "http_status": code, "serial": "FGVMLAB000000000", "version": "v7.2.1", "build": 1254,
	})
}

func (f *FortiGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/api/v2/monitor/system/external-resource/dynamic" {
		f.envelope(w, http.StatusNotFound, "error", nil)
		return
	}
	var req fortiRequest
	err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<20)).Decode(&req)
	body, _ := json.Marshal(req)
	if !f.enter(r, body) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+f.Key {
		f.envelope(w, http.StatusUnauthorized, "error", nil)
		return
	}
	if err != nil {
		f.envelope(w, http.StatusBadRequest, "error", nil)
		return
	}
	now := time.Now()
	var results []fortiResult
	failed := false
	for _, c := range req.Commands {
		if !f.feeds[c.Name] {
			results = append(results, fortiResult{Name: c.Name, Status: "error", Message: "threat feed not found", Entries: c.Entries})
			failed = true
			continue
		}
		var refused []string
		if c.Command == "snapshot" {
			f.snapshots++
			delete(f.regs, c.Name)
		}
		if f.regs[c.Name] == nil {
			f.regs[c.Name] = map[netip.Addr]Registration{}
		}
		for _, s := range c.Entries {
			a, err := netip.ParseAddr(s)
			if _, bad := f.refuse[a]; err != nil || bad {
				refused = append(refused, s)
				continue
			}
			switch c.Command {
			case "add", "snapshot":
				f.regs[c.Name][a] = Registration{Tag: c.Name, Addr: a, At: now}
			case "remove":
				delete(f.regs[c.Name], a)
			}
		}
		if len(refused) > 0 {
			results = append(results, fortiResult{Name: c.Name, Status: "error", Message: "invalid entry", Entries: refused})
			failed = true
			continue
		}
		results = append(results, fortiResult{Name: c.Name, Status: "success"})
	}
	status := "success"
	if failed {
		status = "error"
	}
	f.envelope(w, http.StatusOK, status, results)
}
