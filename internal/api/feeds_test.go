package api

import (
	"io"
	"log/slog"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Deps.Feeds gets every path under /feeds/ and nothing else; without it
// /feeds/ is not served.
func TestFeedsMounted(t *testing.T) {
	feeds := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "feed "+r.URL.Path) })
	base := Deps{Registry: prometheus.NewRegistry(), Log: slog.New(slog.DiscardHandler), Ready: func() (bool, string) { return true, "" }}
	with := base
	with.Feeds = feeds
	tests := []struct {
		name string
		deps Deps
		path string
		code int
		body string
	}{
		{"ip feed", with, "/feeds/v1/ip?client=g", 200, "feed /feeds/v1/ip"},
		{"any feed path", with, "/feeds/v1/checkpoint", 200, "feed /feeds/v1/checkpoint"},
		{"others untouched", with, "/healthz", 200, "ok\n"},
		{"no feeds configured", base, "/feeds/v1/ip?client=g", 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(t, Handler(tc.deps), tc.path)
			if code != tc.code || (tc.body != "" && body != tc.body) {
				t.Errorf("%d %q, want %d %q", code, body, tc.code, tc.body)
			}
		})
	}
}
