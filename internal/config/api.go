package config

import "path/filepath"

// API is the api section. With listen.api on loopback, a token only
// guards POST; off loopback it is required and guards every path but
// /healthz, /readyz, the console's static files and the feeds (which
// check their own tokens).
type API struct {
	// TokenFile holds the bearer token (one line, at least 16 bytes); it
	// must not be readable or writable by others, nor writable by the
	// group. Required when listen.api is not loopback.
	TokenFile string `yaml:"token_file"`
	// TLSCert and TLSKey are PEM files; when both are set the API speaks
	// HTTPS only. They are read again on SIGHUP.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
}

// validateAPI fails closed: an API off loopback without a token would give
// the ledger, the explanations and reload to whoever reaches the port.
func (c *Config) validateAPI(col *collector) {
	a := c.API
	for _, f := range []struct{ key, v string }{{"token_file", a.TokenFile}, {"tls_cert", a.TLSCert}, {"tls_key", a.TLSKey}} {
		if f.v != "" && !filepath.IsAbs(f.v) {
			col.add(path{"api", f.key}, "%q is not an absolute path", f.v)
		}
	}
	if (a.TLSCert == "") != (a.TLSKey == "") {
		col.add(path{"api", "tls_cert"}, "tls_cert and tls_key go together: set both for HTTPS, or neither")
	}
	if c.Derived.API.IsValid() && !c.Derived.API.Addr().IsLoopback() && a.TokenFile == "" {
		col.addAt(path{"listen", "api"}, path{"api", "token_file"}, "required: listen.api %s is not loopback, and every path but /healthz and /readyz needs a token there", c.Derived.API)
	}
}

// describe says who may use the API, for the effective configuration.
func (a API) describe(loopback bool) string {
	scheme := "http"
	if a.TLSCert != "" {
		scheme = "https (" + a.TLSCert + ")"
	}
	switch {
	case a.TokenFile == "":
		return scheme + ", no token (loopback only)"
	case loopback:
		return scheme + ", token " + a.TokenFile + " for POST"
	default:
		return scheme + ", token " + a.TokenFile + " for every path but /healthz, /readyz, /ui/ files and /feeds/"
	}
}
