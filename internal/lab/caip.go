package lab

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/netip"
)

// IPServerConfig presents a certificate for the address ip (an IP SAN):
// what a firewall's management interface, reached by address without
// SNI, presents.
func (ca *CA) IPServerConfig(ip netip.Addr) (*tls.Config, error) {
	cert, err := ca.issue(ip.String(), &x509.Certificate{IPAddresses: []net.IP{ip.AsSlice()}})
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cert}}, nil
}
