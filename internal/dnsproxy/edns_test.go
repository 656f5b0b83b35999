package dnsproxy

import (
	"fmt"
	"net"
	"testing"

	"github.com/miekg/dns"
)

// udpRecorder is a dns.ResponseWriter of a UDP query that keeps the bytes
// the handler sends.
type udpRecorder struct{ wire []byte }

func (r *udpRecorder) LocalAddr() net.Addr { return &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 53} }
func (r *udpRecorder) RemoteAddr() net.Addr {
	return &net.UDPAddr{IP: devA.AsSlice(), Port: 5353}
}
func (r *udpRecorder) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = r.Write(b)
	return err
}
func (r *udpRecorder) Write(b []byte) (int, error) {
	r.wire = append([]byte(nil), b...)
	return len(b), nil
}
func (r *udpRecorder) Close() error        { return nil }
func (r *udpRecorder) TsigStatus() error   { return nil }
func (r *udpRecorder) TsigTimersOnly(bool) {}
func (r *udpRecorder) Hijack()             {}

// ednsQuery is a query with an OPT record as dig's flags make it.
func ednsQuery(name string, bufsize uint16, version uint8, do bool, z uint16, opts ...dns.EDNS0) *dns.Msg {
	m := query(name, dns.TypeA, false)
	m.SetEdns0(bufsize, do)
	opt := m.IsEdns0()
	opt.SetVersion(version)
	opt.SetZ(z)
	opt.Option = append(opt.Option, opts...)
	return m
}

func unknownOption() dns.EDNS0 {
	return &dns.EDNS0_LOCAL{Code: 100, Data: []byte{1, 2, 3}}
}

// RFC 6891 as a resolver must keep it, through the handler's UDP path: the
// truncation size, BADVERS, unknown options and flags, DO.
func TestEDNSConformance(t *testing.T) {
	big := make([]string, 100)
	for i := range big {
		big[i] = fmt.Sprintf("big.svc.example.com. 60 IN A 203.0.113.%d", i+1)
	}
	twoOPT := query("prod.update.sphere.azure.net.", dns.TypeA, true)
	twoOPT.Extra = append(twoOPT.Extra, &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: 1232}})
	tests := []struct {
		name     string
		req      *dns.Msg
		rcode    int
		answers  int  // -1: any, as long as it is truncated
		tc       bool // truncated
		maxLen   int
		minLen   int
		opt      bool // the reply carries an OPT (then of version 0, no unknown option, no Z bits)
		do       bool
		upstream int
	}{
		{name: "no EDNS: 512", req: query("big.svc.example.com.", dns.TypeA, false), answers: -1, tc: true, maxLen: 512, upstream: 1},
		{name: "EDNS 4096 capped at 1232", req: ednsQuery("big.svc.example.com.", 4096, 0, false, 0), answers: -1, tc: true, maxLen: 1232, opt: true, upstream: 1},
		{name: "EDNS below 512 treated as 512", req: ednsQuery("big.svc.example.com.", 100, 0, false, 0), answers: -1, tc: true, maxLen: 512, minLen: 400, opt: true, upstream: 1},
		{name: "small answer fits", req: ednsQuery("prod.update.sphere.azure.net.", 1232, 0, false, 0), answers: 4, maxLen: 1232, opt: true, upstream: 1},
		{name: "version 1: BADVERS, nothing asked", req: ednsQuery("prod.update.sphere.azure.net.", 1232, 1, false, 0), rcode: dns.RcodeBadVers, maxLen: 512, opt: true},
		{name: "version 1 with an unknown option", req: ednsQuery("prod.update.sphere.azure.net.", 1232, 1, true, 0, unknownOption()), rcode: dns.RcodeBadVers, maxLen: 512, opt: true, do: true},
		{name: "version 1 of a denied name", req: ednsQuery("evil.example.", 1232, 1, false, 0), rcode: dns.RcodeBadVers, maxLen: 512, opt: true},
		{name: "unknown option ignored, not echoed", req: ednsQuery("prod.update.sphere.azure.net.", 1232, 0, false, 0, unknownOption()), answers: 4, maxLen: 1232, opt: true, upstream: 1},
		{name: "unknown flags cleared", req: ednsQuery("prod.update.sphere.azure.net.", 1232, 0, false, 0x80), answers: 4, maxLen: 1232, opt: true, upstream: 1},
		{name: "DO echoed", req: ednsQuery("prod.update.sphere.azure.net.", 1232, 0, true, 0), answers: 4, maxLen: 1232, opt: true, do: true, upstream: 1},
		{name: "two OPT records: FORMERR", req: twoOPT, rcode: dns.RcodeFormatError, maxLen: 512, opt: true},
	}
	for _, cached := range []bool{false, true} {
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%s/cached=%v", tc.name, cached), func(t *testing.T) {
				e := newEnv(t, func(o *Options) {
					if cached {
						o.Cache = NewCache(100)
					}
				})
				e.up.records["big.svc.example.com."] = big
				// Cached: the second reply is replayed from the first
				// (prepared); both must conform.
				rounds := 1
				if cached {
					rounds = 2
				}
				for round := range rounds {
					rec := &udpRecorder{}
					e.h.ServeDNS(rec, tc.req.Copy())
					if len(rec.wire) < tc.minLen {
						t.Errorf("round %d: reply of %d bytes, want at least %d", round, len(rec.wire), tc.minLen)
					}
					checkEDNSReply(t, round, rec.wire, tc.req, tc.rcode, tc.answers, tc.tc, tc.maxLen, tc.opt, tc.do)
				}
				if n := e.up.askedFor(tc.req.Question[0].Name); n != tc.upstream {
					t.Errorf("upstream asked %d times, want %d", n, tc.upstream)
				}
			})
		}
	}
}

func checkEDNSReply(t *testing.T, round int, wire []byte, req *dns.Msg, rcode, answers int, tc bool, maxLen int, hasOPT, do bool) {
	t.Helper()
	if len(wire) == 0 {
		t.Fatalf("round %d: no reply", round)
	}
	if len(wire) > maxLen {
		t.Errorf("round %d: reply of %d bytes, more than %d", round, len(wire), maxLen)
	}
	m := new(dns.Msg)
	if err := m.Unpack(wire); err != nil {
		t.Fatalf("round %d: %v", round, err)
	}
	if m.Id != req.Id || m.Rcode != rcode || m.Truncated != tc {
		t.Errorf("round %d: id %d rcode %s tc %v, want id %d rcode %s tc %v", round, m.Id, dns.RcodeToString[m.Rcode], m.Truncated, req.Id, dns.RcodeToString[rcode], tc)
	}
	if answers >= 0 && len(m.Answer) != answers {
		t.Errorf("round %d: %d answers, want %d", round, len(m.Answer), answers)
	}
	opt := m.IsEdns0()
	if (opt != nil) != hasOPT {
		t.Fatalf("round %d: OPT %v, want one: %v", round, opt, hasOPT)
	}
	if opt == nil {
		return
	}
	if opt.Version() != 0 || opt.Z() != 0 || opt.Do() != do {
		t.Errorf("round %d: OPT version %d z %#x do %v, want version 0, z 0, do %v", round, opt.Version(), opt.Z(), opt.Do(), do)
	}
	for _, o := range opt.Option {
		if o.Option() != dns.EDNS0EDE {
			t.Errorf("round %d: option %d echoed", round, o.Option())
		}
	}
}
