package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/fqdngate/fqdngate/internal/api"
	"github.com/fqdngate/fqdngate/internal/config"
)

// apiFlags are the flags of the commands that ask the running daemon.
type apiFlags struct {
	addr   netip.AddrPort
	config string
}

func (f *apiFlags) add(cmd *cobra.Command) {
	f.addr = netip.MustParseAddrPort(config.DefaultAPIListen)
	cmd.Flags().Var(addrPortValue{&f.addr}, "api", "the daemon's API address (listen.api)")
	cmd.Flags().StringVar(&f.config, "config", "", "take the API address from this configuration `FILE`")
	_ = cmd.MarkFlagFilename("config", "yaml", "yml")
}

// base returns the daemon's API URL, and the configuration if --config
// gave one.
func (f *apiFlags) base() (string, *config.Config, error) {
	ap := f.addr
	var c *config.Config
	if f.config != "" {
		var err error
		if c, err = loadOrLocal(f.config, false); err != nil {
			return "", nil, err
		}
		ap = c.Derived.API
	}
	return "http://" + ap.String(), c, nil
}

// getJSON asks the daemon and decodes its answer into v.
func getJSON(base, path string, q url.Values, v any) error {
	client := &http.Client{Timeout: 5 * time.Second}
	u := base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	resp, err := client.Get(u)
	if err != nil {
		return fmt.Errorf("cannot reach fqdngate's API at %s (is 'fqdngate run' up, with this listen.api?): %w", base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s", e.Param, e.Error)
		}
		return fmt.Errorf("%s: %s", u, resp.Status)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s: %w", u, err)
	}
	return nil
}
