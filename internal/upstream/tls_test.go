package upstream

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/lab"
)

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// startDoT serves answer over TLS with a certificate for name only.
func startDoT(t *testing.T, ca *lab.CA, name string) (netip.AddrPort, *countingListener) {
	t.Helper()
	cert, err := ca.Leaf(name)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: raw}
	s := &dns.Server{Net: "tcp-tls", Listener: tls.NewListener(cl, &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}), Handler: dns.HandlerFunc(answer)}
	go func() { _ = s.ActivateAndServe() }()
	t.Cleanup(func() { _ = s.Shutdown() })
	return netip.MustParseAddrPort(raw.Addr().String()), cl
}

func TestTLS(t *testing.T) {
	ca, err := lab.NewCA("upstream test CA")
	if err != nil {
		t.Fatal(err)
	}
	other, err := lab.NewCA("someone else")
	if err != nil {
		t.Fatal(err)
	}
	ap, conns := startDoT(t, ca, "dns.lab.example")
	for _, tc := range []struct {
		name   string
		server string
		ca     *lab.CA
		err    string
	}{
		{"verified and reused", "dns.lab.example", ca, ""},
		{"wrong server name", "wrong.lab.example", ca, "certificate is valid for dns.lab.example, not wrong.lab.example"},
		{"untrusted", "dns.lab.example", other, "certificate signed by unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conns.n.Store(0)
			p := newPool(t, []Spec{{Addr: ap, TLS: true, ServerName: tc.server}}, Options{CaseRandomization: true, RootCAs: tc.ca.Pool()})
			for i := range 5 {
				rep, err := p.Exchange(context.Background(), aQuery("www.example.com."))
				if tc.err != "" {
					if err == nil || !strings.Contains(err.Error(), tc.err) {
						t.Fatalf("error %v, want %q", err, tc.err)
					}
					return
				}
				if err != nil {
					t.Fatalf("query %d: %v", i, err)
				}
				if len(rep.Msg.Answer) != 1 || rep.Msg.Question[0].Name != "www.example.com." {
					t.Fatalf("query %d: %v", i, rep.Msg)
				}
			}
			if n := conns.n.Load(); n != 1 {
				t.Errorf("%d connections for 5 queries in a row, want 1 (reused)", n)
			}
		})
	}
}

// TestTLSReconnects: a reused connection the server closed is replaced
// without failing the query.
func TestTLSReconnects(t *testing.T) {
	ca, err := lab.NewCA("upstream test CA")
	if err != nil {
		t.Fatal(err)
	}
	ap, conns := startDoT(t, ca, "dns.lab.example")
	p := newPool(t, []Spec{{Addr: ap, TLS: true, ServerName: "dns.lab.example"}}, Options{RootCAs: ca.Pool()})
	if _, err := p.Exchange(context.Background(), aQuery("a.example.")); err != nil {
		t.Fatal(err)
	}
	// Close the idle connection from our side's view of the server: take
	// it, close its transport, and put it back as if still good.
	sc := p.proxies[0].takeIdle(timeNow())
	if sc == nil {
		t.Fatal("no idle connection after an exchange")
	}
	_ = sc.Conn.Conn.(*tls.Conn).NetConn().Close()
	p.proxies[0].idle <- sc
	if _, err := p.Exchange(context.Background(), aQuery("b.example.")); err != nil {
		t.Fatalf("after the connection broke: %v", err)
	}
	if n := conns.n.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
	// Idle too long: closed, not reused.
	if sc := p.proxies[0].takeIdle(timeNow().Add(tlsIdleTimeout + time.Second)); sc != nil {
		t.Error("a connection idle beyond tlsIdleTimeout was reused")
	}
}
