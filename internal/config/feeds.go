package config

import (
	"fmt"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Feeds is the feeds section (DESIGN section 12): what the firewall a
// site already has is told of the answers.
type Feeds struct {
	// Widen lists a pattern the EDL domain list cannot hold (a wildcard
	// inside a label, azgn*.servicebus.windows.net) as the wider *.zone;
	// false leaves it out of the domain feed and reports it.
	Widen bool `yaml:"widen"`
	// Tokens are who may read the pull feeds; without one, no feed is
	// served.
	Tokens []FeedToken `yaml:"tokens"`
	// Push are firewalls every answer is pushed to as it is released.
	Push []PushTarget `yaml:"push"`
}

// FeedToken lets one consumer read some pull feeds of some groups.
type FeedToken struct {
	// Name identifies the token in logs and errors (never the secret).
	Name string `yaml:"name"`
	// TokenFile holds the secret, sent as the HTTP Basic password (any
	// user) or as a Bearer token. Required.
	TokenFile string `yaml:"token_file"`
	// Feeds it may read: ip, domain, checkpoint. Required.
	Feeds []string `yaml:"feeds"`
	// Clients are the client groups it may read. Required.
	Clients []string `yaml:"clients"`
}

// PushTarget is one firewall answers are pushed to.
type PushTarget struct {
	// Type is panos (User-ID XML API, dynamic address group tags) or
	// fortigate (7.2.1+ external-resource/dynamic).
	Type string `yaml:"type"`
	// URL is the firewall's management address, https://host[:port].
	URL string `yaml:"url"`
	// KeyFile holds the API key (PAN-OS X-PAN-KEY, FortiGate Bearer).
	KeyFile string `yaml:"key_file"`
	// CAFile, if set, is the only CA the firewall's certificate may chain
	// to; otherwise the system's roots.
	CAFile string `yaml:"ca_file"`
	// Tag is the PAN-OS tag registered with each address; {client} and
	// {rule} are the group's and rule's names. panos only.
	Tag string `yaml:"tag"`
	// Name is the FortiGate external resource (threat feed) of an
	// address, with the same placeholders. fortigate only.
	Name string `yaml:"name"`
	// BatchMS is the longest an answer waits to be sent with others.
	BatchMS int `yaml:"batch_ms"`
	// BatchMax is the most addresses in one request.
	BatchMax int `yaml:"batch_max"`
	// Hold makes an answer wait, within enforcer.hold, for this
	// firewall's acknowledgement (SERVFAIL past it).
	Hold bool `yaml:"hold"`
}

// Feed names a token may list.
var feedNames = []string{"ip", "domain", "checkpoint"}

// placeholder finds {name} in tag and name templates.
var placeholder = regexp.MustCompile(`\{[^}]*\}`)

func (c *Config) applyFeedDefaults() {
	for i := range c.Feeds.Push {
		t := &c.Feeds.Push[i]
		switch t.Type {
		case "panos":
			setDefault(&t.Tag, DefaultPushTag)
		case "fortigate":
			setDefault(&t.Name, DefaultPushTag)
		}
		if t.BatchMS == 0 {
			t.BatchMS = DefaultPushBatchMS
		}
		if t.BatchMax == 0 {
			t.BatchMax = DefaultPushBatchMax
		}
	}
}

func (c *Config) validateFeeds(col *collector) {
	f := &c.Feeds
	groups := make(map[string]bool, len(c.Clients))
	for _, cl := range c.Clients {
		groups[cl.Name] = true
	}
	seen := map[string]int{}
	for i, t := range f.Tokens {
		p := path{"feeds", "tokens", i}
		switch prev, dup := seen[t.Name]; {
		case t.Name == "":
			col.add(p.with("name"), "required")
		case dup:
			col.add(p.with("name"), "%q is already the name of feeds.tokens[%d]", t.Name, prev)
		default:
			seen[t.Name] = i
		}
		if t.TokenFile == "" {
			col.add(p.with("token_file"), "required: a file holding the token")
		}
		if len(t.Feeds) == 0 {
			col.add(p.with("feeds"), "required: at least one of %s", strings.Join(feedNames, ", "))
		}
		for j, name := range t.Feeds {
			oneOf(col, p.with("feeds", j), name, feedNames...)
		}
		if len(t.Clients) == 0 {
			col.add(p.with("clients"), "required: the client groups this token may read")
		}
		for j, g := range t.Clients {
			if !groups[g] {
				col.add(p.with("clients", j), "%q is not a client group", g)
			}
		}
	}
	for i, t := range f.Push {
		p := path{"feeds", "push", i}
		oneOf(col, p.with("type"), t.Type, "panos", "fortigate")
		if u, err := url.Parse(t.URL); err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			col.add(p.with("url"), "%q is not https://host[:port] (the key is sent with every request: only over TLS)", t.URL)
		}
		if t.KeyFile == "" {
			col.add(p.with("key_file"), "required: a file holding the API key")
		}
		switch t.Type {
		case "panos":
			checkTemplate(col, p.with("tag"), t.Tag)
			if t.Name != "" {
				col.add(p.with("name"), "only for type fortigate; PAN-OS takes a tag")
			}
		case "fortigate":
			checkTemplate(col, p.with("name"), t.Name)
			if t.Tag != "" {
				col.add(p.with("tag"), "only for type panos; a FortiGate takes an external resource name")
			}
		}
		if t.BatchMS < 1 || t.BatchMS > 10000 {
			col.add(p.with("batch_ms"), "%d is outside 1..10000", t.BatchMS)
		}
		if t.BatchMax < 1 || t.BatchMax > 10000 {
			col.add(p.with("batch_max"), "%d is outside 1..10000", t.BatchMax)
		}
	}
}

// checkTemplate accepts tags and names with only {client} and {rule}.
func checkTemplate(col *collector, p path, s string) {
	if s == "" {
		col.add(p, "required")
		return
	}
	for _, m := range placeholder.FindAllString(s, -1) {
		if !slices.Contains([]string{"{client}", "{rule}"}, m) {
			col.add(p, "%q: unknown placeholder %s (known: {client}, {rule})", s, m)
		}
	}
	if len(s) > 127 {
		col.add(p, "%q is longer than 127 characters", s)
	}
}

// writeFeeds prints the feeds section of the effective configuration.
func (c *Config) writeFeeds(w io.Writer) {
	f := c.Feeds
	if len(f.Tokens) == 0 && len(f.Push) == 0 {
		return
	}
	fmt.Fprintln(w, "\nfeeds:")
	if len(f.Tokens) > 0 {
		widen := "left out and reported"
		if f.Widen {
			widen = "widened to *.zone, with a comment"
		}
		fmt.Fprintf(w, "  pull: /feeds/v1/{ip,domain,checkpoint} on the API listener; patterns a domain list cannot hold are %s\n", widen)
	}
	for _, t := range f.Tokens {
		fmt.Fprintf(w, "  token %s (%s): feeds %s of %s\n", t.Name, t.TokenFile, strings.Join(t.Feeds, ", "), strings.Join(t.Clients, ", "))
	}
	for _, t := range f.Push {
		what := "tag " + t.Tag
		if t.Type == "fortigate" {
			what = "external resource " + t.Name
		}
		hold := "answers do not wait"
		if t.Hold {
			hold = fmt.Sprintf("answers wait for its acknowledgement, within %s", c.Enforcer.Hold)
		}
		ca := "system roots"
		if t.CAFile != "" {
			ca = t.CAFile
		}
		fmt.Fprintf(w, "  push %s %s: %s, key %s, CA %s, batches of up to %d addresses every %d ms; %s\n",
			t.Type, t.URL, what, t.KeyFile, ca, t.BatchMax, t.BatchMS, hold)
	}
}
