package ui

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestFiles(t *testing.T) {
	h := Handler()
	for _, tc := range []struct {
		path, ctype, body string
	}{
		{"/", "text/html", `<script src="app.js" defer></script>`},
		{"/app.js", "javascript", "sessionStorage"},
		{"/style.css", "text/css", "font"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
		if rec.Code != 200 || !strings.Contains(rec.Header().Get("Content-Type"), tc.ctype) || !strings.Contains(rec.Body.String(), tc.body) {
			t.Errorf("GET %s: %d %q, want %s with %q", tc.path, rec.Code, rec.Header().Get("Content-Type"), tc.ctype, tc.body)
		}
		if rec.Header().Get("Cache-Control") != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q: an old app.js could outlive an upgrade", tc.path, rec.Header().Get("Cache-Control"))
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/nope.js", nil))
	if rec.Code != 404 {
		t.Errorf("missing file: %d", rec.Code)
	}
}
