// Package check probes endpoints the way a device would and reports, for
// each, one cause per failure: DNS (with the CNAME chain, addresses and
// TTL), TCP, TLS (chain, issuer, expiry, name, version, interception) and
// HTTP. It is what `fqdngate check` runs.
package check

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/policy"
)

// Causes, stable: they are part of the JSON schema.
const (
	CauseWildcard     = "wildcard"       // cannot be probed: give a concrete name
	CauseDNSNXDomain  = "dns-nxdomain"   // the name does not exist (or the resolver denies it)
	CauseDNSTimeout   = "dns-timeout"    // no answer from the resolver
	CauseDNSError     = "dns-error"      // SERVFAIL, REFUSED, malformed
	CauseDNSNoAddress = "dns-no-address" // an answer without A/AAAA
	CauseTCPRefused   = "tcp-refused"    // RST: nothing listens, or a firewall rejects
	CauseTCPTimeout   = "tcp-timeout"    // no answer: a firewall drops
	CauseTCPError     = "tcp-error"
	CauseUDPTimeout   = "udp-timeout"     // no reply to an NTP request
	CauseTLSIntercept = "tls-intercepted" // the chain ends at a CA the endpoint does not use
	CauseTLSUntrusted = "tls-untrusted"   // the chain does not verify against the roots
	CauseTLSHostname  = "tls-hostname"    // the certificate is for another name
	CauseTLSExpired   = "tls-expired"     // a certificate of the chain is expired or not yet valid
	CauseTLSVersion   = "tls-old-version" // the server negotiated below TLS 1.2
	CauseTLSError     = "tls-error"       // the handshake failed
	CauseHTTPStatus   = "http-status"     // a 5xx, or no HTTP response
	CauseHTTPError    = "http-error"
)

// DefaultExpectedIssuers are the root CAs Microsoft's endpoints chain to
// (the DigiCert and Microsoft roots, and the older Baltimore root). A chain
// that ends anywhere else is somebody else's: an inspecting proxy.
var DefaultExpectedIssuers = []string{
	"DigiCert Global Root G2",
	"DigiCert Global Root G3",
	"DigiCert Global Root CA",
	"Microsoft RSA Root Certificate Authority 2017",
	"Microsoft ECC Root Certificate Authority 2017",
	"Baltimore CyberTrust Root",
}

// Target is one host and port to probe.
type Target struct {
	Profile  string `json:"profile,omitempty"`
	Host     string `json:"host"`
	Proto    string `json:"proto"` // tcp or udp
	Port     uint16 `json:"port"`
	Required bool   `json:"required"`
	Purpose  string `json:"purpose,omitempty"`
}

func (t Target) String() string { return fmt.Sprintf("%s %s/%d", t.Host, t.Proto, t.Port) }

// Finding is one problem found.
type Finding struct {
	Cause  string `json:"cause"`
	Detail string `json:"detail"`
}

// DNSResult is what the resolver said.
type DNSResult struct {
	Server string       `json:"server"`
	Rcode  string       `json:"rcode,omitempty"`
	Chain  []string     `json:"chain,omitempty"`
	Addrs  []netip.Addr `json:"addrs,omitempty"`
	TTL    uint32       `json:"ttl_seconds,omitempty"`
}

// TLSResult is the handshake's outcome.
type TLSResult struct {
	Version string `json:"version,omitempty"`
	// Chain is the presented certificates' subjects, leaf first.
	Chain  []string `json:"chain,omitempty"`
	Issuer string   `json:"issuer,omitempty"`
	// Root is the CA the chain ends at (verified root, or the top issuer).
	Root     string    `json:"root,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`
}

// Result is one target's report. Status is pass, fail or skip.
type Result struct {
	Target
	Status   string     `json:"status"`
	DNS      *DNSResult `json:"dns,omitempty"`
	Addr     netip.Addr `json:"addr,omitzero"`
	TLS      *TLSResult `json:"tls,omitempty"`
	HTTP     int        `json:"http_status,omitempty"`
	Findings []Finding  `json:"findings,omitempty"`
	Millis   int64      `json:"elapsed_ms"`
}

func (r *Result) fail(cause, format string, args ...any) {
	r.Findings = append(r.Findings, Finding{Cause: cause, Detail: fmt.Sprintf(format, args...)})
}

// Options configure a run.
type Options struct {
	// DNS is the resolver to ask, as IP:port.
	DNS string
	// Timeout bounds each step (DNS, connect, handshake, request).
	Timeout time.Duration
	// Parallel bounds the probes running at once.
	Parallel int
	// Roots verify chains; nil means the system roots.
	Roots *x509.CertPool
	// ExpectedIssuers are the root CA names a chain may end at.
	ExpectedIssuers []string
	// Dial makes connections (tests dial inside a namespace); nil: net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Progress, if set, is called after each target.
	Progress func(done, total int)
	// Now is the clock for certificate validity; nil: time.Now.
	Now func() time.Time
}

// TLSPorts are probed with a TLS handshake.
var TLSPorts = []uint16{443, 5671, 8084, 8443, 8883}

// Run probes every target, at most opt.Parallel at once, until ctx ends;
// targets not reached in time are reported as failed with the context's
// error. Results are in the targets' order.
func Run(ctx context.Context, targets []Target, opt Options) []Result {
	if opt.Parallel < 1 {
		opt.Parallel = 8
	}
	if opt.Dial == nil {
		d := &net.Dialer{}
		opt.Dial = d.DialContext
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	results := make([]Result, len(targets))
	sem := make(chan struct{}, opt.Parallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				results[i] = probe(ctx, t, opt)
				<-sem
			case <-ctx.Done():
				results[i] = Result{Target: t, Status: "fail", Findings: []Finding{{CauseTCPTimeout, "not probed: " + ctx.Err().Error()}}}
			}
			if opt.Progress != nil {
				mu.Lock()
				done++
				opt.Progress(done, len(targets))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return results
}

func probe(ctx context.Context, t Target, opt Options) (r Result) {
	r = Result{Target: t}
	start := time.Now()
	defer func() {
		r.Millis = time.Since(start).Milliseconds()
		switch {
		case r.Status == "skip":
		case len(r.Findings) > 0:
			r.Status = "fail"
		default:
			r.Status = "pass"
		}
	}()
	if strings.Contains(t.Host, "*") {
		r.Status = "skip"
		r.fail(CauseWildcard, "cannot be probed: give a concrete name under %s with --host", t.Host)
		return r
	}
	// An IP literal is probed as given: asking DNS for "127.0.0.1" would
	// report the resolver's NXDOMAIN, not the address.
	addr, err := netip.ParseAddr(t.Host)
	if err != nil {
		var ok bool
		if addr, ok = resolve(ctx, &r, opt); !ok {
			return r
		}
	}
	r.Addr = addr
	if t.Proto == "udp" {
		ntp(ctx, &r, opt)
		return r
	}
	dctx, cancel := context.WithTimeout(ctx, opt.Timeout)
	defer cancel()
	conn, err := opt.Dial(dctx, "tcp", netip.AddrPortFrom(addr, t.Port).String())
	if err != nil {
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			r.fail(CauseTCPRefused, "%s:%d refused the connection", addr, t.Port)
		case isTimeout(err):
			r.fail(CauseTCPTimeout, "no answer from %s:%d within %s: dropped on the way", addr, t.Port, opt.Timeout)
		default:
			r.fail(CauseTCPError, "%s:%d: %v", addr, t.Port, err)
		}
		return r
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * opt.Timeout))
	if slices.Contains(TLSPorts, t.Port) {
		handshake(conn, &r, opt)
		return r
	}
	if t.Port == 80 {
		httpGet(conn, &r)
	}
	return r
}

// resolve asks for A (then AAAA), following the answer's CNAME chain.
func resolve(ctx context.Context, r *Result, opt Options) (netip.Addr, bool) {
	r.DNS = &DNSResult{Server: opt.DNS}
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(r.Host), qt)
		c := &dns.Client{Timeout: opt.Timeout}
		var resp *dns.Msg
		var err error
		conn, derr := opt.Dial(ctx, "udp", opt.DNS)
		if derr == nil {
			dc := &dns.Conn{Conn: conn}
			resp, _, err = c.ExchangeWithConnContext(ctx, m, dc)
			conn.Close()
		} else {
			err = derr
		}
		if err != nil {
			if isTimeout(err) {
				r.fail(CauseDNSTimeout, "no answer from %s within %s", opt.DNS, opt.Timeout)
			} else {
				r.fail(CauseDNSError, "%s: %v", opt.DNS, err)
			}
			return netip.Addr{}, false
		}
		r.DNS.Rcode = dns.RcodeToString[resp.Rcode]
		switch resp.Rcode {
		case dns.RcodeSuccess:
		case dns.RcodeNameError:
			r.fail(CauseDNSNXDomain, "%s answered NXDOMAIN (the name does not exist, or the resolver denies it)", opt.DNS)
			return netip.Addr{}, false
		default:
			r.fail(CauseDNSError, "%s answered %s", opt.DNS, dns.RcodeToString[resp.Rcode])
			return netip.Addr{}, false
		}
		r.DNS.Chain, r.DNS.Addrs, r.DNS.TTL = nil, nil, 0
		ttl := uint32(1 << 31)
		for _, rr := range resp.Answer {
			ttl = min(ttl, rr.Header().Ttl)
			switch v := rr.(type) {
			case *dns.CNAME:
				r.DNS.Chain = append(r.DNS.Chain, strings.TrimSuffix(v.Target, "."))
			case *dns.A:
				if a, ok := netip.AddrFromSlice(v.A.To4()); ok {
					r.DNS.Addrs = append(r.DNS.Addrs, a)
				}
			case *dns.AAAA:
				if a, ok := netip.AddrFromSlice(v.AAAA); ok {
					r.DNS.Addrs = append(r.DNS.Addrs, a)
				}
			}
		}
		if len(r.DNS.Addrs) > 0 {
			r.DNS.TTL = ttl
			return r.DNS.Addrs[0], true
		}
	}
	r.fail(CauseDNSNoAddress, "%s gave no address", opt.DNS)
	return netip.Addr{}, false
}

// handshake does TLS with SNI and checks the chain by hand, so that a
// chain is reported even when it does not verify.
func handshake(conn net.Conn, r *Result, opt Options) {
	tc := tls.Client(conn, &tls.Config{ServerName: r.Host, InsecureSkipVerify: true, MinVersion: tls.VersionTLS10}) //nolint:gosec // verified below, by hand
	if err := tc.Handshake(); err != nil {
		r.fail(CauseTLSError, "handshake with %s: %v", r.Addr, err)
		return
	}
	st := tc.ConnectionState()
	certs := st.PeerCertificates
	res := &TLSResult{Version: tls.VersionName(st.Version)}
	r.TLS = res
	for _, c := range certs {
		res.Chain = append(res.Chain, name(c.Subject.CommonName, c.Subject.Organization))
	}
	if len(certs) == 0 {
		r.fail(CauseTLSError, "no certificate")
		return
	}
	leaf := certs[0]
	res.Issuer = name(leaf.Issuer.CommonName, leaf.Issuer.Organization)
	res.NotAfter = leaf.NotAfter.UTC()
	top := certs[len(certs)-1]
	res.Root = top.Issuer.CommonName
	if st.Version < tls.VersionTLS12 {
		r.fail(CauseTLSVersion, "%s negotiated; TLS 1.2 or later is required", res.Version)
	}
	now := opt.Now()
	for _, c := range certs {
		if now.After(c.NotAfter) || now.Before(c.NotBefore) {
			r.fail(CauseTLSExpired, "%q is valid from %s to %s", c.Subject.CommonName, c.NotBefore.UTC().Format(time.DateOnly), c.NotAfter.UTC().Format(time.DateOnly))
		}
	}
	if err := leaf.VerifyHostname(r.Host); err != nil {
		names := slices.Compact(slices.Sorted(slices.Values(append([]string{leaf.Subject.CommonName}, leaf.DNSNames...))))
		r.fail(CauseTLSHostname, "the certificate is for %s, not %s", strings.Join(names, ", "), r.Host)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, verr := leaf.Verify(x509.VerifyOptions{Roots: opt.Roots, Intermediates: inter, CurrentTime: now})
	if verr == nil && len(chains) > 0 {
		root := chains[0][len(chains[0])-1]
		res.Root = root.Subject.CommonName
	}
	expected := slices.Contains(opt.ExpectedIssuers, res.Root)
	switch {
	case !expected:
		// Trusted here or not, a chain that ends at a CA the endpoint
		// does not use has been re-signed on the way.
		r.fail(CauseTLSIntercept, "the chain ends at %q, not at a CA %s uses (%s): TLS is intercepted by %q",
			res.Root, r.Host, strings.Join(opt.ExpectedIssuers, ", "), res.Root)
	case verr != nil && !hasCause(r.Findings, CauseTLSExpired, CauseTLSHostname):
		r.fail(CauseTLSUntrusted, "%v", verr)
	}
}

func hasCause(fs []Finding, causes ...string) bool {
	return slices.ContainsFunc(fs, func(f Finding) bool { return slices.Contains(causes, f.Cause) })
}

func name(cn string, org []string) string {
	if len(org) > 0 && org[0] != cn {
		return cn + " (" + org[0] + ")"
	}
	return cn
}

func httpGet(conn net.Conn, r *Result) {
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nUser-Agent: fqdngate-check\r\nConnection: close\r\n\r\n", hostHeader(r.Host)); err != nil {
		r.fail(CauseHTTPError, "%v", err)
		return
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		r.fail(CauseHTTPStatus, "no HTTP response: %v", err)
		return
	}
	resp.Body.Close()
	r.HTTP = resp.StatusCode
	if resp.StatusCode >= 500 {
		r.fail(CauseHTTPStatus, "HTTP %s", resp.Status)
	}
}

// ntp sends one NTP client request and waits for a server reply.
func ntp(ctx context.Context, r *Result, opt Options) {
	conn, err := opt.Dial(ctx, "udp", netip.AddrPortFrom(r.Addr, r.Port).String())
	if err != nil {
		r.fail(CauseTCPError, "%v", err)
		return
	}
	defer conn.Close()
	req := make([]byte, 48)
	req[0] = 0x23 // NTP v4, client
	_ = conn.SetDeadline(time.Now().Add(opt.Timeout))
	if _, err := conn.Write(req); err != nil {
		r.fail(CauseUDPTimeout, "%v", err)
		return
	}
	resp := make([]byte, 128)
	n, err := conn.Read(resp)
	if err != nil || n < 48 || resp[0]&7 != 4 {
		r.fail(CauseUDPTimeout, "no NTP reply from %s:%d within %s", r.Addr, r.Port, opt.Timeout)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}

// Summary counts results.
type Summary struct {
	Total          int `json:"total"`
	Passed         int `json:"passed"`
	Failed         int `json:"failed"`
	Skipped        int `json:"skipped"`
	RequiredFailed int `json:"required_failed"`
}

// Summarize counts results.
func Summarize(rs []Result) Summary {
	var s Summary
	for _, r := range rs {
		s.Total++
		switch r.Status {
		case "pass":
			s.Passed++
		case "skip":
			s.Skipped++
		default:
			s.Failed++
			if r.Required {
				s.RequiredFailed++
			}
		}
	}
	return s
}

// ParseHostPort reads --host "name:port" or "name:udp/123".
func ParseHostPort(s string) (Target, error) {
	host, port, ok := strings.Cut(s, ":")
	if strings.HasPrefix(s, "[") {
		// An IPv6 literal: [2001:db8::7]:443.
		var a string
		a, port, ok = strings.Cut(s[1:], "]:")
		ip, err := netip.ParseAddr(a)
		if !ok || err != nil || !ip.Is6() || ip.Zone() != "" {
			return Target{}, fmt.Errorf("%q is not [IPv6]:PORT", s)
		}
		host = ip.String()
	}
	if !ok || host == "" {
		return Target{}, fmt.Errorf("%q is not HOST:PORT", s)
	}
	proto := "tcp"
	if p, n, ok := strings.Cut(port, "/"); ok {
		proto, port = p, n
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 || (proto != "tcp" && proto != "udp") {
		return Target{}, fmt.Errorf("%q is not HOST:PORT (port 1-65535, optionally udp/N)", s)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return Target{Host: ip.String(), Proto: proto, Port: uint16(n), Required: true}, nil
	}
	p, err := policy.ParsePattern(host)
	if err != nil || p.Kind != policy.Exact {
		return Target{}, fmt.Errorf("%q is not a host name", host)
	}
	return Target{Host: p.Text, Proto: proto, Port: uint16(n), Required: true}, nil
}

// hostHeader brackets an IPv6 literal, as HTTP's Host wants it.
func hostHeader(host string) string {
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		return "[" + host + "]"
	}
	return host
}
