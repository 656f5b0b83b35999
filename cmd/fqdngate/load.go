package main

import (
	"errors"
	"io"
	"log/slog"

	"github.com/fqdngate/fqdngate/internal/config"
)

// loadOrLocal loads a configuration file, or without one the local
// observing configuration. A file that does not validate is the user's to
// fix (2, its errors printed as they are: they name file, line and
// field); one that cannot be read is a failure (1). strict makes the
// configuration's warnings errors (--strict).
func loadOrLocal(file string, strict bool) (*config.Config, error) {
	if file == "" {
		ups, err := config.SystemUpstreams("/etc/resolv.conf")
		if err != nil {
			return nil, inputError(err)
		}
		c, err := config.Local(ups)
		if err != nil {
			return nil, inputError(err)
		}
		return c, nil
	}
	c, err := config.Load(file, config.WithStrict(strict))
	if err != nil {
		code := exitRuntime
		if errors.Is(err, config.ErrInvalid) {
			code = exitUsage
		}
		return nil, &exitError{code: code, err: err, bare: true}
	}
	return c, nil
}

func newLogger(c *config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.Derived.LogLevel}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
