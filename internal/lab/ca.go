package lab

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"
)

// CA is the lab's certificate authority. The fake services present
// certificates it issues for whatever name the client sends in SNI, and
// lab devices trust only it, so a device's TLS handshake proves it reached
// a lab service under the name it asked for.
type CA struct {
	Name string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool

	mu    sync.Mutex
	leafs map[string]*tls.Certificate
	// overrides are presented instead of the CA's own leaf for a name:
	// what an inspecting proxy or a misconfigured server would present.
	overrides map[string]*tls.Certificate
}

// maxLeafs bounds the issued-certificate cache; lab names are few.
const maxLeafs = 4096

// NewCA makes a CA valid for a day, with the given common name.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"fqdngate lab"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("lab CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Name: name, cert: cert, key: key, pool: pool, leafs: make(map[string]*tls.Certificate),
		overrides: make(map[string]*tls.Certificate)}, nil
}

// Pool holds the CA certificate, for clients.
func (ca *CA) Pool() *x509.CertPool { return ca.pool }

// ServerConfig presents a certificate for the SNI name the client asks for.
func (ca *CA) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if hello.ServerName == "" {
				return nil, fmt.Errorf("no SNI")
			}
			ca.mu.Lock()
			o := ca.overrides[strings.ToLower(hello.ServerName)]
			ca.mu.Unlock()
			if o != nil {
				return o, nil
			}
			return ca.Leaf(hello.ServerName)
		},
	}
}

// Override makes the services present cert for name instead of the CA's
// own leaf.
func (ca *CA) Override(name string, cert *tls.Certificate) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.overrides[strings.ToLower(name)] = cert
}

// PEM is the CA certificate in PEM, for a client's --ca-file.
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// Leaf returns a certificate for name, issuing it on first use.
func (ca *CA) Leaf(name string) (*tls.Certificate, error) {
	name = strings.ToLower(name)
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if c, ok := ca.leafs[name]; ok {
		return c, nil
	}
	c, err := ca.issue(name, &x509.Certificate{DNSNames: []string{name}})
	if err != nil {
		return nil, err
	}
	if len(ca.leafs) >= maxLeafs {
		clear(ca.leafs)
	}
	ca.leafs[name] = c
	return c, nil
}

// issue signs a server certificate for subject, with tmpl's names (its
// DNSNames or IPAddresses), valid for a day.
func (ca *CA) issue(subject string, tmpl *x509.Certificate) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.Subject = pkix.Name{CommonName: subject}
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("lab CA: issue %s: %w", subject, err)
	}
	return &tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key}, nil
}
