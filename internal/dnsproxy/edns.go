package dnsproxy

import "github.com/miekg/dns"

// clientMaxUDPSize caps the EDNS buffer a client advertises when fqdngate
// decides whether a UDP reply must be truncated (DNS flag day 2020): a
// larger reply is sent in IP fragments, which paths drop and off-path
// attackers spoof. The client retries over TCP, where nothing is cut.
const clientMaxUDPSize = 1232

// clientUDPSize is the largest UDP reply req may get: 512 without EDNS,
// the advertised size within 512..clientMaxUDPSize with it (RFC 6891
// section 6.2.5: values below 512 are treated as 512).
func clientUDPSize(req *dns.Msg) int {
	opt := req.IsEdns0()
	if opt == nil {
		return dns.MinMsgSize
	}
	return min(max(int(opt.UDPSize()), dns.MinMsgSize), clientMaxUDPSize)
}

// checkEDNS returns RcodeSuccess for a query whose EDNS fqdngate speaks
// (RFC 6891 section 6.1.1: more than one OPT is FORMERR; section 6.1.3: a
// version other than 0 is BADVERS, answered with an OPT of version 0 and
// nothing else). Unknown options and flags are no error: they are ignored
// and not echoed, because every reply carries fqdngate's own OPT.
func checkEDNS(req *dns.Msg) (int, string) {
	var opt *dns.OPT
	for _, rr := range req.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			if opt != nil {
				return dns.RcodeFormatError, "fqdngate: more than one OPT record"
			}
			opt = o
		}
	}
	if opt != nil && opt.Version() != 0 {
		return dns.RcodeBadVers, "fqdngate: only EDNS version 0"
	}
	return dns.RcodeSuccess, ""
}
