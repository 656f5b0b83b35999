package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testToken = "s3cret-token-0123456789"

func writeToken(t testing.TB, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestReadToken: the file's checks are internal/secret's (tested there);
// the API's errors name api.token_file.
func TestReadToken(t *testing.T) {
	if got, err := ReadToken(writeToken(t, testToken+"\n", 0o600)); err != nil || string(got) != testToken {
		t.Fatalf("ReadToken = %q, %v; want %q", got, err, testToken)
	}
	if _, err := ReadToken(writeToken(t, testToken, 0o644)); !errors.Is(err, ErrTokenFile) || !strings.Contains(err.Error(), "mode 0644") {
		t.Fatalf("a world-readable token: %v, want an api.token_file error naming the mode", err)
	}
	if _, err := ReadToken(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := NewSecurity("", "", "", true); !errors.Is(err, ErrTokenFile) {
		t.Errorf("off loopback without a token: %v, want refused", err)
	}
}

// stub answers what reached it, so that a test sees what the middleware
// let through.
var stub = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if _, err := io.ReadAll(r.Body); err != nil {
		http.Error(w, "body: "+err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	io.WriteString(w, "reached "+r.URL.Path)
})

func TestToken(t *testing.T) {
	tokenFile := writeToken(t, testToken, 0o600)
	bearer := "Bearer " + testToken
	tests := []struct {
		name            string
		protect, hasTok bool
		method, path    string
		auth            string
		code            int
	}{
		// Off loopback: everything but the open paths needs the token.
		{"remote api without token", true, true, "GET", "/api/v1/ledger", "", 401},
		{"remote metrics without token", true, true, "GET", "/metrics", "", 401},
		{"remote wrong token", true, true, "GET", "/api/v1/ledger", "Bearer " + strings.Repeat("x", len(testToken)), 401},
		{"remote token prefix", true, true, "GET", "/api/v1/ledger", bearer[:len(bearer)-1], 401},
		{"remote basic", true, true, "GET", "/api/v1/ledger", "Basic dXNlcjpwYXNz", 401},
		{"remote token", true, true, "GET", "/api/v1/ledger", bearer, 200},
		{"remote token lower-case scheme", true, true, "GET", "/api/v1/status", "bearer " + testToken, 200},
		{"remote healthz", true, true, "GET", "/healthz", "", 200},
		{"remote readyz", true, true, "GET", "/readyz", "", 200},
		{"remote console files", true, true, "GET", "/ui/app.js", "", 200},
		{"remote POST reload", true, true, "POST", "/api/v1/reload", "", 401},
		{"remote POST to an open path", true, true, "POST", "/healthz", "", 401},
		{"remote POST reload with token", true, true, "POST", "/api/v1/reload", bearer, 200},
		// Feeds check their own tokens: passed through untouched.
		{"remote feed", true, true, "GET", "/feeds/azure.txt", "", 200},
		{"remote feed basic", true, true, "GET", "/feeds/azure.txt", "Basic dXNlcjpwYXNz", 200},
		{"remote feed POST", true, true, "POST", "/feeds/x", "", 200},
		// On loopback: reads are open, POST needs the token when there is one.
		{"local api", false, true, "GET", "/api/v1/ledger", "", 200},
		{"local POST without token", false, true, "POST", "/api/v1/reload", "", 401},
		{"local POST wrong token", false, true, "POST", "/api/v1/reload", "Bearer nope-nope-nope-nope", 401},
		{"local POST with token", false, true, "POST", "/api/v1/reload", bearer, 200},
		{"local POST, no token configured", false, false, "POST", "/api/v1/reload", "", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := ""
			if tc.hasTok {
				file = tokenFile
			}
			sec, err := NewSecurity(file, "", "", tc.protect)
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(tc.method, tc.path, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			sec.Wrap(stub).ServeHTTP(rec, req)
			if rec.Code != tc.code {
				t.Fatalf("%s %s: %d %q, want %d", tc.method, tc.path, rec.Code, rec.Body.String(), tc.code)
			}
			if tc.code != 401 {
				if !strings.HasPrefix(rec.Body.String(), "reached ") {
					t.Errorf("not passed to the handler: %q", rec.Body.String())
				}
				return
			}
			if got := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("WWW-Authenticate = %q, want Bearer", got)
			}
			var e Error
			if rec.Header().Get("Content-Type") != "application/json" || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "" {
				t.Errorf("401 body is not a JSON error: %q", rec.Body.String())
			}
		})
	}
}

func TestFailedAuthRateLimited(t *testing.T) {
	sec, err := NewSecurity(writeToken(t, testToken, 0o600), "", "", true)
	if err != nil {
		t.Fatal(err)
	}
	h := sec.Wrap(stub)
	codes := map[int]int{}
	for range authFailBurst + 10 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/ledger", nil))
		codes[rec.Code]++
	}
	if codes[429] == 0 {
		t.Errorf("no 429 after %d failed tries: %v", authFailBurst+10, codes)
	}
	// The right token still passes while guessing is throttled.
	req := httptest.NewRequest("GET", "/api/v1/ledger", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Errorf("valid token while throttled: %d", rec.Code)
	}
}

func TestBodyBounded(t *testing.T) {
	sec, _ := NewSecurity("", "", "", false)
	rec := httptest.NewRecorder()
	sec.Wrap(stub).ServeHTTP(rec, httptest.NewRequest("POST", "/api/v1/reload", strings.NewReader(strings.Repeat("x", maxBodyBytes+1))))
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("body over %d bytes: %d %q", maxBodyBytes, rec.Code, rec.Body.String())
	}
}

func TestSecurityHeaders(t *testing.T) {
	h, _, _ := newAPI(t, true)
	sec, err := NewSecurity(writeToken(t, testToken, 0o600), "", "", true)
	if err != nil {
		t.Fatal(err)
	}
	hs, _, _ := newAPIWith(t, true, sec)
	for _, tc := range []struct {
		h    http.Handler
		path string
		code int
	}{{h, "/ui/", 200}, {h, "/ui/app.js", 200}, {h, "/api/v1/status", 200}, {h, "/api/v1/explain", 400}, {h, "/nope", 404}, {h, "/healthz", 200},
		{hs, "/api/v1/ledger", 401}, {hs, "/ui/", 200}} {
		rec := httptest.NewRecorder()
		tc.h.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		if rec.Code != tc.code {
			t.Errorf("GET %s: %d, want %d", tc.path, rec.Code, tc.code)
		}
		hd := rec.Header()
		c := hd.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "object-src 'none'"} {
			if !strings.Contains(c, want) {
				t.Errorf("GET %s: CSP %q lacks %q", tc.path, c, want)
			}
		}
		if strings.Contains(c, "unsafe") || strings.Contains(c, "http") {
			t.Errorf("GET %s: CSP %q allows inline code or another origin", tc.path, c)
		}
		if hd.Get("X-Content-Type-Options") != "nosniff" || hd.Get("Referrer-Policy") != "no-referrer" || hd.Get("X-Frame-Options") != "DENY" {
			t.Errorf("GET %s: headers %v", tc.path, hd)
		}
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// the certificate.
func selfSigned(t *testing.T, dir string, serial int64) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "fqdngate test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, cert := selfSigned(t, dir, 1)
	sec, err := NewSecurity(writeToken(t, testToken, 0o600), certFile, keyFile, false)
	if err != nil {
		t.Fatal(err)
	}
	h, _, _ := newAPI(t, true)
	srv, err := Listen(netip.MustParseAddrPort("127.0.0.1:0"), sec.Wrap(h), sec.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	addr := srv.Addr().String()
	client := func(c *x509.Certificate) *http.Client {
		pool := x509.NewCertPool()
		pool.AddCert(c)
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	res, err := client(cert).Get("https://" + addr + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Strict-Transport-Security") == "" || res.TLS == nil {
		t.Errorf("https: %d, HSTS %q", res.StatusCode, res.Header.Get("Strict-Transport-Security"))
	}
	// Plain HTTP on the TLS port gets nothing useful.
	if res, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/api/v1/status"); err == nil {
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == 200 {
			t.Errorf("plain http answered 200: %q", body)
		}
	}
	// A new certificate is served from the next connection after Reload.
	_, _, cert2 := selfSigned(t, dir, 2)
	if err := sec.Reload(); err != nil {
		t.Fatal(err)
	}
	res, err = client(cert2).Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("after reload: %v", err)
	}
	res.Body.Close()
	if got := res.TLS.PeerCertificates[0].SerialNumber.Int64(); got != 2 {
		t.Errorf("serial after reload = %d, want 2", got)
	}
	// A broken file on reload keeps the certificate in force.
	if err := os.WriteFile(certFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := sec.Reload(); err == nil {
		t.Error("reload of a broken certificate succeeded")
	}
	res, err = client(cert2).Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("after a failed reload: %v", err)
	}
	res.Body.Close()
}

// FuzzAuthorization: no Authorization header but the exact bearer token
// gets through, and none makes the check panic.
func FuzzAuthorization(f *testing.F) {
	for _, s := range []string{"", "Bearer " + testToken, "bearer " + testToken, "Bearer  " + testToken + " ", "Basic dXNlcjpwYXNz", "Bearer", "Bearer "} {
		f.Add(s)
	}
	sec, err := NewSecurity(writeToken(f, testToken, 0o600), "", "", true)
	if err != nil {
		f.Fatal(err)
	}
	h := sec.Wrap(stub)
	f.Fuzz(func(t *testing.T, auth string) {
		req := httptest.NewRequest("GET", "/api/v1/ledger", nil)
		req.Header["Authorization"] = []string{auth}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		scheme, tok, _ := strings.Cut(auth, " ")
		valid := strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(tok) == testToken
		if (rec.Code == 200) != valid {
			t.Fatalf("Authorization %q: %d", auth, rec.Code)
		}
	})
}
