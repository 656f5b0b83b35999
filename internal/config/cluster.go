package config

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fqdngate/fqdngate/internal/ledger"
	"github.com/fqdngate/fqdngate/internal/secret"
)

// NATSEmbedded is the `nats:` value that runs a NATS server inside fqdngate.
const NATSEmbedded = "embedded"

// Cluster is the cluster section (DESIGN section 14): the nodes of one
// site replicate their answers through NATS JetStream, so that a node
// taking over the VIP already holds what the other told its clients.
type Cluster struct {
	// Name is the site: its answers travel on fqdngate.<name>.<node>....
	// Required; letters, digits, '_' and '-' (a NATS subject token).
	Name string `yaml:"name"`
	// Node is this node's name, unique in the site. Required; the same
	// characters as Name.
	Node string `yaml:"node"`
	// NATS is "embedded" (a NATS server with JetStream runs inside
	// fqdngate, routed to the peers) or the nats:// or tls:// URLs of an
	// existing NATS cluster. A single value may be written without a list.
	// Required.
	NATS []string `yaml:"nats" config:"one-or-list"`
	// Listen is the embedded server's route address, IP[:port] (port
	// ClusterPort when omitted), where the peers' servers connect.
	// Embedded only; loopback when omitted and there are no routes.
	Listen string `yaml:"listen"`
	// Routes are the other nodes' route addresses, nats://IP[:port] (port
	// ClusterPort when omitted). Listing the node itself is harmless.
	// Embedded only.
	Routes []string `yaml:"routes"`
	// TokenFile holds the shared secret of the NATS connections and of
	// the embedded server's routes; the same file on every node.
	// Required when the embedded server listens off loopback.
	TokenFile string `yaml:"token_file"`
	// CatchupTimeout is how long a starting node waits for an unreachable
	// peer's stream before it reports ready alone.
	CatchupTimeout time.Duration `yaml:"catchup_timeout"`
}

// DerivedCluster is the cluster section checked and normalised.
type DerivedCluster struct {
	// Listen is the embedded server's route address; zero with external
	// NATS.
	Listen netip.AddrPort
	// Routes are the peers' route URLs, nats://IP:port ([v6]:port), in
	// file order; nil with external NATS.
	Routes []string
	// URLs are the external NATS servers' URLs as given; nil when
	// embedded (fqdngate connects to its own server in-process).
	URLs []string
	// Token is the content of token_file, "" without one.
	Token string
}

// Embedded is true when fqdngate runs its own NATS server.
func (c *Cluster) Embedded() bool {
	return len(c.NATS) == 1 && c.NATS[0] == NATSEmbedded
}

// AnswersSubject is the subject this node publishes its answers on.
func (c *Cluster) AnswersSubject() string {
	return "fqdngate." + c.Name + "." + c.Node + ".answers"
}

func (c *Config) applyClusterDefaults(ps positions) {
	if c.Cluster == nil {
		return
	}
	if !ps.present(path{"cluster", "catchup_timeout"}) {
		c.Cluster.CatchupTimeout = DefaultCatchupTimeout
	}
}

func (c *Config) validateCluster(col *collector) {
	cl := c.Cluster
	if cl == nil {
		return
	}
	p := path{"cluster"}
	d := &DerivedCluster{}
	for _, f := range []struct{ key, v string }{{"name", cl.Name}, {"node", cl.Node}} {
		switch {
		case f.v == "":
			col.add(p.with(f.key), "required: letters, digits, '_' and '-', at most 64")
		case !ledger.ValidNodeName(f.v): // the ledger's store checks the same
			col.add(p.with(f.key), "%q is not a cluster %s: letters, digits, '_' and '-', at most 64 (it is a NATS subject token and part of a stream name)", f.v, f.key)
		}
	}
	embedded := cl.Embedded()
	switch {
	case len(cl.NATS) == 0:
		col.add(p.with("nats"), "required: embedded, or the nats:// or tls:// URLs of a NATS cluster")
	case embedded:
	default:
		for i, s := range cl.NATS {
			u, err := checkNATSURL(s)
			if err != nil {
				col.add(p.with("nats", i), "%v", err)
				continue
			}
			d.URLs = append(d.URLs, u)
		}
	}
	if !embedded {
		if cl.Listen != "" {
			col.add(p.with("listen"), "only with nats: embedded (it is the embedded server's route address)")
		}
		if len(cl.Routes) > 0 {
			col.add(p.with("routes"), "only with nats: embedded (an external NATS cluster routes itself)")
		}
	} else {
		d.Listen = clusterListen(col, p.with("listen"), cl.Listen, len(cl.Routes) > 0)
		d.Routes = clusterRoutes(col, p.with("routes"), cl.Routes)
	}
	if cl.TokenFile != "" {
		if !filepath.IsAbs(cl.TokenFile) {
			col.add(p.with("token_file"), "%q is not an absolute path", cl.TokenFile)
		} else if tok, err := secret.ReadToken(cl.TokenFile); err != nil {
			col.add(p.with("token_file"), "%v", err)
		} else {
			d.Token = string(tok)
		}
	} else if embedded && d.Listen.IsValid() && !d.Listen.Addr().IsLoopback() {
		col.addAt(p.with("listen"), p.with("token_file"), "required: the embedded server listens on %s, not loopback, and without a shared token anyone reaching it could write answers into every node's firewall", d.Listen)
	}
	if cl.CatchupTimeout <= 0 || cl.CatchupTimeout > MaxCatchupTimeout {
		col.add(p.with("catchup_timeout"), "%s is outside 1ms..%s", cl.CatchupTimeout, MaxCatchupTimeout)
	}
	c.Derived.Cluster = d
}

// checkNATSURL accepts nats://host[:port] and tls://host[:port]. A host
// may be a name here: it is resolved by the system, not by fqdngate.
// Credentials in the URL are refused: the secret belongs in token_file.
func checkNATSURL(s string) (string, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil || (u.Scheme != "nats" && u.Scheme != "tls"):
		return "", fmt.Errorf("%q is not a nats:// or tls:// URL (or embedded, alone)", s)
	case u.Hostname() == "":
		return "", fmt.Errorf("%q has no host", s)
	case u.User != nil:
		return "", fmt.Errorf("%q holds credentials: put the token in cluster.token_file", s)
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("%q: a NATS URL is scheme://host[:port], nothing after it", s)
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("%q: port %s is not 1..65535", s, port)
		}
	}
	return u.Scheme + "://" + u.Host, nil
}

// parseClusterAddr reads IP[:port] ([v6]:port, or a bare v6 address).
func parseClusterAddr(s string) (netip.AddrPort, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, ap.Port() != 0 && ap.Addr().Zone() == ""
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil && a.Zone() == "" {
		return netip.AddrPortFrom(a, ClusterPort), true
	}
	return netip.AddrPort{}, false
}

func clusterListen(col *collector, p path, s string, routes bool) netip.AddrPort {
	if s == "" {
		if routes {
			col.add(p, "required with routes: the IP address (and port, %d when omitted) the peers' servers connect to", ClusterPort)
			return netip.AddrPort{}
		}
		return netip.AddrPortFrom(netip.MustParseAddr(DefaultClusterListen), ClusterPort)
	}
	ap, ok := parseClusterAddr(s)
	if !ok {
		col.add(p, "%q is not an IP address with an optional port (e.g. 192.0.2.11 or 192.0.2.11:%d); names are not accepted", s, ClusterPort)
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func clusterRoutes(col *collector, p path, in []string) []string {
	var out []string
	seen := map[netip.AddrPort]int{}
	for i, s := range in {
		rest, ok := strings.CutPrefix(s, "nats://")
		ap, valid := parseClusterAddr(rest)
		if !ok || !valid {
			col.add(p.with(i), "%q is not nats://IP[:port] (port %d when omitted); names are not accepted", s, ClusterPort)
			continue
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if prev, dup := seen[ap]; dup {
			col.add(p.with(i), "%s is already routes[%d]", ap, prev)
			continue
		}
		seen[ap] = i
		out = append(out, "nats://"+net.JoinHostPort(ap.Addr().String(), strconv.Itoa(int(ap.Port()))))
	}
	return out
}

func (c *Config) warnCluster(col *collector) {
	cl := c.Cluster
	if cl == nil {
		return
	}
	if cl.Embedded() && len(cl.Routes) == 0 {
		col.warn(path{"cluster", "nats"}, "embedded without routes: one node, nothing to replicate to; list the other nodes under cluster.routes")
	}
	if c.StateDir == "" {
		col.warn(path{"state_dir"}, "no state_dir in a cluster: a restarted node forgets its own answers and has only what it catches up from its peers within catchup_timeout; alone, its clients' cached answers stop working")
	}
}

// writeCluster prints the cluster view for `fqdngate validate`.
func (c *Config) writeCluster(w io.Writer) {
	cl, d := c.Cluster, c.Derived.Cluster
	if cl == nil || d == nil {
		return
	}
	fmt.Fprintf(w, "\ncluster: site %s, node %s\n", cl.Name, cl.Node)
	if cl.Embedded() {
		fmt.Fprintf(w, "  nats: embedded server (JetStream), routes listen on %s\n", d.Listen)
		if len(d.Routes) == 0 {
			fmt.Fprintln(w, "  peers: none (no routes)")
		} else {
			fmt.Fprintf(w, "  peers: %s\n", strings.Join(d.Routes, ", "))
		}
	} else {
		fmt.Fprintf(w, "  nats: external, %s\n", strings.Join(d.URLs, ", "))
		fmt.Fprintf(w, "  peers: every node of site %s on the NATS cluster\n", cl.Name)
	}
	fmt.Fprintf(w, "  publishes: %s\n", cl.AnswersSubject())
	fmt.Fprintf(w, "  applies: fqdngate.%s.<other node>.answers\n", cl.Name)
	tok := "none"
	if cl.TokenFile != "" {
		tok = cl.TokenFile
	}
	fmt.Fprintf(w, "  token: %s\n", tok)
	fmt.Fprintf(w, "  ready: after catching up, or alone after %s without a peer\n", cl.CatchupTimeout)
}
