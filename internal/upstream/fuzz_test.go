package upstream

import "testing"

// FuzzParseSpec: any entry either fails or reads back from its String
// as the same spec, with a port and, for TLS, a server name.
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"198.51.100.53", "[2001:db8::53]:5353", "tls://198.51.100.54#dns.lab.example", "tls://[2001:db8::1]:853#a.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := ParseSpec(s)
		if err != nil {
			return
		}
		if sp.Addr.Port() == 0 || !sp.Addr.Addr().IsValid() || sp.Addr.Addr().Zone() != "" || sp.Addr.Addr().Is4In6() {
			t.Fatalf("%q: bad address %v", s, sp.Addr)
		}
		if sp.TLS != (sp.ServerName != "") {
			t.Fatalf("%q: TLS %v with server name %q", s, sp.TLS, sp.ServerName)
		}
		again, err := ParseSpec(sp.String())
		if err != nil || again != sp {
			t.Fatalf("%q: %q reads back as %+v, %v", s, sp.String(), again, err)
		}
	})
}
