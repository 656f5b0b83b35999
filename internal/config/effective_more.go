package config

import (
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fqdngate/fqdngate/internal/ledger"
)

// The effective printout's lines for settings that have no section of
// their own.

func cacheSize(n int) string {
	if n == 0 {
		return "off (cache_size 0): every allowed query goes upstream"
	}
	return fmt.Sprintf("up to %d answers, each for its TTL (cache_size; a change needs a restart)", n)
}

func stateDir(dir string) string {
	if dir == "" {
		return `none (state_dir ""): a restart forgets what clients were told`
	}
	return filepath.Join(dir, ledger.StoreFile) + " (what clients were told survives a restart)"
}

func params(m map[string]string) string {
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		kv = append(kv, k+"="+m[k])
	}
	return strings.Join(kv, ", ")
}

// writeWarnings ends the printout with the warnings, where a terminal
// shows them last.
func writeWarnings(w io.Writer, warns Errors) {
	if len(warns) == 0 {
		return
	}
	fmt.Fprintf(w, "\nwarnings (%d; --strict makes them errors):\n", len(warns))
	for _, e := range warns {
		fmt.Fprintf(w, "  %s\n", e)
	}
}
