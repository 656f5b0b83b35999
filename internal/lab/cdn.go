package lab

import (
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// SiteKind says how the fake internet answers for a name.
type SiteKind int

const (
	// Stable is a cloud service on one fixed address (a cloudapp-like
	// name), the same for every asker.
	Stable SiteKind = iota
	// FrontDoor is an anycast front end: the same answer for every asker,
	// changing every rotation period.
	FrontDoor
	// CDN is an Akamai-like edge: the answer depends on who asks (the
	// resolver's address picks a geo pool) and changes every rotation
	// period.
	CDN
)

func (k SiteKind) String() string {
	return [...]string{"stable", "front-door", "cdn"}[k]
}

// Site is one name of the fake internet and the CNAME chain behind it.
type Site struct {
	Name  string
	Kind  SiteKind
	Chain []string // CNAME targets after Name, in order, fully qualified
}

// Address plan of the fake internet (DESIGN section 10 ranges only).
const (
	// Geos is the number of CDN geo pools; a resolver's address picks one
	// (the last byte modulo Geos), so two resolvers in different places
	// get different answers for the same CDN name.
	Geos = 4
	// geoPoolSize addresses per geo, 203.0.113.16 up: 4 × 48 = 192 CDN
	// addresses in all.
	geoPoolSize = 48
	geoBase     = 16
	// Stable and front-door sites live at 203.0.113.224 and up.
	stableBase = 224
	// AnswerAddrs is how many addresses a CDN or front-door answer has.
	AnswerAddrs = 2
)

// GeoOf is the geo pool the fake CDN serves a resolver at src from.
func GeoOf(src netip.Addr) int {
	b := src.Unmap().AsSlice()
	return int(b[len(b)-1]) % Geos
}

// AuthDNS is the fake internet's authoritative DNS server. It serves every
// lab zone from one place, returning whole CNAME chains the way a recursive
// resolver assembles them, so gateways can use it as their upstream
// directly and its query counts are exact: a name that never reaches it
// never left the gateway.
type AuthDNS struct {
	// TTL of CDN and front-door answers; also the rotation period.
	TTL time.Duration
	// Clock is the time used for rotation; time.Now if nil.
	Clock func() time.Time

	sites  map[string]*Site // by every name of the chain, fqdn lower case
	index  map[*Site]int
	mu     sync.Mutex
	counts map[string]int // queries by name, fqdn lower case
}

// NewAuthDNS builds the server for sites.
func NewAuthDNS(sites []Site, ttl time.Duration) *AuthDNS {
	a := &AuthDNS{TTL: ttl, sites: make(map[string]*Site), index: make(map[*Site]int),
		counts: make(map[string]int)}
	for i := range sites {
		s := &sites[i]
		a.index[s] = i
		a.sites[dns.Fqdn(strings.ToLower(s.Name))] = s
		for _, c := range s.Chain {
			a.sites[dns.Fqdn(strings.ToLower(c))] = s
		}
	}
	return a
}

// Count is the number of queries for name.
func (a *AuthDNS) Count(name string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.counts[dns.Fqdn(strings.ToLower(name))]
}

// CountSuffix is the number of queries for names ending in suffix.
func (a *AuthDNS) CountSuffix(suffix string) int {
	suffix = dns.Fqdn(strings.ToLower(suffix))
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for name, c := range a.counts {
		if dns.IsSubDomain(suffix, name) {
			n += c
		}
	}
	return n
}

func (a *AuthDNS) now() time.Time {
	if a.Clock != nil {
		return a.Clock()
	}
	return time.Now()
}

// addrs is what the site's final name resolves to for a resolver in geo
// at time now.
func (a *AuthDNS) addrs(s *Site, geo int, now time.Time, v6 bool) []netip.Addr {
	idx := a.index[s]
	var last []byte
	switch s.Kind {
	case Stable:
		if _, known := a.index[s]; !known {
			idx = int(hash32(s.Name)) // a name under a wildcard
		}
		last = []byte{byte(stableBase + idx%30)}
	default:
		slot := int(now.UnixNano() / int64(a.TTL))
		h := int(hash32(s.Name))
		for i := range AnswerAddrs {
			if s.Kind == FrontDoor {
				last = append(last, byte(stableBase+(h+slot*AnswerAddrs+i)%30))
				continue
			}
			last = append(last, byte(geoBase+geo*geoPoolSize+(h+slot*AnswerAddrs+i)%geoPoolSize))
		}
	}
	out := make([]netip.Addr, len(last))
	for i, b := range last {
		if v6 {
			out[i] = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0xcd, 15: b})
		} else {
			out[i] = netip.AddrFrom4([4]byte{203, 0, 113, b})
		}
	}
	return out
}

func hash32(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}

// ServeDNS answers from the site table; anything else is NXDOMAIN (and
// counted, which is how an exfiltration attempt shows up here).
func (a *AuthDNS) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	a.mu.Lock()
	a.counts[name]++
	a.mu.Unlock()
	s, ok := a.sites[name]
	if !ok {
		s, ok = a.wildcard(name)
	}
	if !ok {
		m.Rcode = dns.RcodeNameError
		_ = w.WriteMsg(m)
		return
	}
	src, _ := netip.AddrFromSlice(addrIP(w.RemoteAddr()))
	geo := GeoOf(src)
	ttl := uint32(a.TTL / time.Second)
	// The chain from the asked name on.
	chain := append([]string{dns.Fqdn(strings.ToLower(s.Name))}, s.Chain...)
	for i, c := range chain {
		if c != name {
			continue
		}
		for j := i; j+1 < len(chain); j++ {
			m.Answer = append(m.Answer, &dns.CNAME{
				Hdr:    dns.RR_Header{Name: chain[j], Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 300},
				Target: chain[j+1]})
		}
		break
	}
	final := chain[len(chain)-1]
	finalTTL := ttl
	if s.Kind == Stable {
		finalTTL = 300
	}
	if q.Qtype == dns.TypeA || q.Qtype == dns.TypeAAAA {
		v6 := q.Qtype == dns.TypeAAAA
		addrs := a.addrs(s, geo, a.now(), v6)
		for _, ad := range addrs {
			hdr := dns.RR_Header{Name: final, Class: dns.ClassINET, Ttl: finalTTL}
			if v6 {
				hdr.Rrtype = dns.TypeAAAA
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: ad.AsSlice()})
			} else {
				hdr.Rrtype = dns.TypeA
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: ad.AsSlice()})
			}
		}
	}
	_ = w.WriteMsg(m)
}

// wildcard finds the site "*.zone" of the closest enclosing zone of name
// and makes a stable site of name itself from it, whose address depends
// on the name: a zone where every random name resolves, as a flood under
// an allowed wildcard needs.
func (a *AuthDNS) wildcard(name string) (*Site, bool) {
	for zone := name; ; {
		_, rest, ok := strings.Cut(zone, ".")
		if !ok || rest == "" {
			return nil, false
		}
		if w, ok := a.sites["*."+rest]; ok && len(w.Chain) == 0 {
			return &Site{Name: name, Kind: Stable}, true
		}
		zone = rest
	}
}

func addrIP(a net.Addr) net.IP {
	switch v := a.(type) {
	case *net.UDPAddr:
		return v.IP
	case *net.TCPAddr:
		return v.IP
	}
	return nil
}

// Serve starts the server on addr (UDP and TCP) inside ns. The returned
// function stops it.
func (a *AuthDNS) Serve(ns *NS, addr string) (func(), error) {
	return serveDNS(ns, addr, a)
}

// serveDNS starts a miekg/dns server on UDP and TCP inside ns.
func serveDNS(ns *NS, addr string, h dns.Handler) (func(), error) {
	var servers []*dns.Server
	err := ns.Do(func() error {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return fmt.Errorf("dns on %s: %w", addr, err)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			pc.Close()
			return fmt.Errorf("dns on %s: %w", addr, err)
		}
		servers = []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, s := range servers {
		go func() { _ = s.ActivateAndServe() }()
	}
	return func() {
		for _, s := range servers {
			_ = s.Shutdown()
		}
	}, nil
}

// SphereSites is the fake internet of the support request: every name the
// device uses is a CNAME into a CDN-like zone. Update, connection checks,
// image delivery, releases and crash-report blobs go through an
// Akamai-like edge (two hops, geo pools, rotation); two services sit behind
// an anycast front door; the rest are cloud services on fixed addresses.
// hub is the IoT hub's name.
func SphereSites(hub string) []Site {
	akamai := func(name string) Site {
		return Site{Name: name, Kind: CDN, Chain: []string{
			name + ".edgekey.example.",
			fmt.Sprintf("e%d.a.akamaiedge.example.", 1000+hash32(name)%9000),
		}}
	}
	frontDoor := func(name string) Site {
		label, _, _ := strings.Cut(name, ".")
		return Site{Name: name, Kind: FrontDoor, Chain: []string{
			label + ".azurefd.example.",
			fmt.Sprintf("part-%04d.t-0009.fdv2-msedge.example.", hash32(name)%10000),
		}}
	}
	cloudapp := func(name string) Site {
		label, _, _ := strings.Cut(name, ".")
		return Site{Name: name, Kind: Stable, Chain: []string{label + "-prod.cloudapp.example."}}
	}
	return []Site{
		akamai("prod.update.sphere.azure.net"),
		akamai("www.msftconnecttest.com"),
		akamai("sphere.sb.dl.delivery.mp.microsoft.com"),
		akamai("prod.releases.sphere.azure.net"),
		akamai("sphereblobeus.azurewatson.microsoft.com"),
		akamai("sphereblobweus.azurewatson.microsoft.com"),
		frontDoor("anse.azurewatson.microsoft.com"),
		frontDoor("prod.dinsights.core.sphere.azure.net"),
		cloudapp("global.azure-devices-provisioning.net"),
		cloudapp("prod.device.core.sphere.azure.net"),
		cloudapp("prod.deviceauth.sphere.azure.net"),
		cloudapp("prod.core.sphere.azure.net"),
		cloudapp("prodmsimg.blob.core.windows.net"),
		cloudapp("prodptimg.blob.core.windows.net"),
		cloudapp("prodmsimg-secondary.blob.core.windows.net"),
		cloudapp("prodptimg-secondary.blob.core.windows.net"),
		cloudapp("prod.time.sphere.azure.net"),
		cloudapp("time.sphere.azure.net"),
		cloudapp(hub + ".azure-devices.net"),
		// Not in any catalog profile: a device asking for it shows what a
		// gateway does with names outside the policy.
		cloudapp("telemetry.vendor.example"),
	}
}
