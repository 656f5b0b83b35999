package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"

	"golang.org/x/time/rate"

	"github.com/fqdngate/fqdngate/internal/secret"
)

// maxBodyBytes bounds a request body; no endpoint reads more than a few
// bytes, so this only keeps a client from making the server read.
const maxBodyBytes = 64 << 10

// Failed authentications are answered 429 past this rate, so that the
// token cannot be guessed at the speed of the network.
const (
	authFailPerSec = 10
	authFailBurst  = 50
)

// csp allows the console's own files and nothing else: no inline script
// or style, no other origin, no framing.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// ErrTokenFile is returned for a token file that is unsafe or not a token.
var ErrTokenFile = errors.New("api.token_file")

// Security is the API's access control and TLS material. Reload re-reads
// both; requests in flight keep what they started with.
type Security struct {
	tokenFile, certFile, keyFile string
	// protect is true when listen.api is not loopback: every path but
	// the open ones needs the token.
	protect bool
	// token is the SHA-256 of the token; nil when no token file is set.
	token atomic.Pointer[[sha256.Size]byte]
	cert  atomic.Pointer[tls.Certificate]
	fails *rate.Limiter
}

// NewSecurity reads the token file and the certificate. protect is true
// when the listener is not on loopback; then a token is required.
func NewSecurity(tokenFile, certFile, keyFile string, protect bool) (*Security, error) {
	if protect && tokenFile == "" {
		return nil, fmt.Errorf("%w: required when listen.api is not loopback", ErrTokenFile)
	}
	s := &Security{tokenFile: tokenFile, certFile: certFile, keyFile: keyFile, protect: protect,
		fails: rate.NewLimiter(authFailPerSec, authFailBurst)}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload re-reads the token file and the certificate (SIGHUP). On error
// the old ones stay in force.
func (s *Security) Reload() error {
	var tok *[sha256.Size]byte
	if s.tokenFile != "" {
		t, err := ReadToken(s.tokenFile)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(t)
		tok = &sum
	}
	var cert *tls.Certificate
	if s.certFile != "" {
		c, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
		if err != nil {
			return fmt.Errorf("api.tls_cert, api.tls_key: %w", err)
		}
		cert = &c
	}
	s.token.Store(tok)
	s.cert.Store(cert)
	return nil
}

// ReadToken reads a token file with secret.ReadToken's checks; errors
// wrap ErrTokenFile.
func ReadToken(path string) ([]byte, error) {
	b, err := secret.ReadToken(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTokenFile, err)
	}
	return b, nil
}

// TLSConfig is the server's TLS configuration, nil without a certificate.
// The certificate is looked up per handshake, so a reload takes effect
// for the next connection.
func (s *Security) TLSConfig() *tls.Config {
	if s == nil || s.certFile == "" {
		return nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return s.cert.Load(), nil
	}}
}

// openPath is a path that needs no token: probes, the console's static
// files (they hold no data; the page asks for the token when the API
// answers 401, and a browser cannot attach a bearer token to a
// navigation), and feeds, which check their own per-feed tokens.
func openPath(p string) bool {
	return p == "/healthz" || p == "/readyz" || p == "/" || p == "/ui" ||
		strings.HasPrefix(p, "/ui/") || strings.HasPrefix(p, "/feeds/")
}

// Wrap adds the security headers to every response, bounds request
// bodies, and asks for the token where it is needed: off loopback on
// every path but the open ones, and for every method but GET and HEAD
// whenever a token is configured. Paths under /feeds/ are passed through
// untouched: they authenticate themselves.
func (s *Security) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if strings.HasPrefix(r.URL.Path, "/api/") {
			h.Set("Cache-Control", "no-store")
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		if strings.HasPrefix(r.URL.Path, "/feeds/") {
			next.ServeHTTP(w, r)
			return
		}
		if s.needsToken(r) {
			if msg, ok := s.check(r); !ok {
				s.deny(w, msg)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Security) needsToken(r *http.Request) bool {
	safe := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch {
	case s.protect:
		return !(safe && openPath(r.URL.Path))
	case !safe:
		// On loopback, POST needs the token when one is configured.
		return s.token.Load() != nil
	}
	return false
}

// check compares the bearer token in constant time: both sides are
// hashed first, so neither the token's bytes nor its length leak.
func (s *Security) check(r *http.Request) (string, bool) {
	want := s.token.Load()
	if want == nil {
		// Off loopback without a token: NewSecurity refuses that; fail
		// closed if it ever happens.
		return "no token is configured (api.token_file)", false
	}
	auth := r.Header.Get("Authorization")
	scheme, tok, found := strings.Cut(auth, " ")
	if auth == "" {
		return "a token is required: Authorization: Bearer <token>", false
	}
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "the Authorization header must be Bearer <token>", false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return "the token is not valid", false
	}
	return "", true
}

func (s *Security) deny(w http.ResponseWriter, msg string) {
	if !s.fails.Allow() {
		w.Header().Set("Retry-After", "1")
		writeJSONStatus(w, http.StatusTooManyRequests, Error{Error: "too many failed authentications; retry later"})
		return
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="fqdngate"`)
	writeJSONStatus(w, http.StatusUnauthorized, Error{Error: msg})
}
