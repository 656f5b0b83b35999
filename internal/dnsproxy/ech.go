package dnsproxy

import "github.com/miekg/dns"

// stripECH removes the ech SvcParam from the HTTPS and SVCB records of
// m's answer. With enforcer.verify on, a client that learnt no ECH keys
// sends the real server name in its ClientHello, where it is checked
// against the ledger. The records edited are copies (m's records may be
// shared with the cache).
func stripECH(m *dns.Msg) {
	for i, rr := range m.Answer {
		var s *dns.SVCB
		switch v := rr.(type) {
		case *dns.HTTPS:
			if !hasECH(&v.SVCB) {
				continue
			}
			c := dns.Copy(v).(*dns.HTTPS)
			m.Answer[i], s = c, &c.SVCB
		case *dns.SVCB:
			if !hasECH(v) {
				continue
			}
			c := dns.Copy(v).(*dns.SVCB)
			m.Answer[i], s = c, c
		default:
			continue
		}
		values := s.Value[:0]
		for _, kv := range s.Value {
			if kv.Key() != dns.SVCB_ECHCONFIG {
				values = append(values, kv)
			}
		}
		s.Value = values
	}
}

func hasECH(s *dns.SVCB) bool {
	for _, kv := range s.Value {
		if kv.Key() == dns.SVCB_ECHCONFIG {
			return true
		}
	}
	return false
}
