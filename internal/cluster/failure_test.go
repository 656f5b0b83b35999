package cluster

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// TestFailure: a failure is logged when it begins and when it ends, not
// at every retry, and the readiness reason carries the last error.
func TestFailure(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	var f failure
	steps := []struct {
		err    error
		reason string
		lines  int
	}{
		{nil, "", 0},
		{errors.New("nats: timeout"), " (last error: nats: timeout)", 1},
		{errors.New("nats: no responders"), " (last error: nats: no responders)", 1},
		{nil, "", 2},
		{nil, "", 2},
	}
	for i, s := range steps {
		f.set(log, "listing the site's streams", s.err, "source", "nats://192.0.2.3:6222")
		if got := f.String(); got != s.reason {
			t.Errorf("step %d: reason %q, want %q", i, got, s.reason)
		}
		if n := strings.Count(buf.String(), "\n"); n != s.lines {
			t.Errorf("step %d: %d lines logged, want %d:\n%s", i, n, s.lines, buf.String())
		}
	}
	if !strings.Contains(buf.String(), "level=WARN msg=\"listing the site's streams: failing, retried\"") ||
		!strings.Contains(buf.String(), "level=INFO msg=\"listing the site's streams: works again\"") {
		t.Errorf("log:\n%s", buf.String())
	}
}
