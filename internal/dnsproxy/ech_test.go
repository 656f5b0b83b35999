package dnsproxy

import (
	"testing"

	"github.com/miekg/dns"
)

func TestStripECH(t *testing.T) {
	tests := []struct {
		name, rr, want string
	}{
		{"https with ech", `a.example. 60 IN HTTPS 1 . alpn=h2 ech=AEX+DQBBpQAgACB/ ipv4hint=192.0.2.1`,
			`a.example.	60	IN	HTTPS	1 . alpn="h2" ipv4hint="192.0.2.1"`},
		{"svcb with ech", `_dns.a.example. 60 IN SVCB 1 b.example. ech=AEX+DQBBpQAgACB/`,
			`_dns.a.example.	60	IN	SVCB	1 b.example.`},
		{"https without ech", `a.example. 60 IN HTTPS 1 . alpn=h3`, `a.example.	60	IN	HTTPS	1 . alpn="h3"`},
		{"a record", `a.example. 60 IN A 192.0.2.1`, `a.example.	60	IN	A	192.0.2.1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rr, err := dns.NewRR(tt.rr)
			if err != nil {
				t.Fatal(err)
			}
			orig := rr.String()
			m := &dns.Msg{Answer: []dns.RR{rr}}
			stripECH(m)
			if got := m.Answer[0].String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if rr.String() != orig {
				t.Errorf("the shared record was edited: %q", rr.String())
			}
		})
	}
}
