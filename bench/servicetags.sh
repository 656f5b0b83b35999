#!/usr/bin/env bash
# The service tags index at the public file's size (60,000 prefixes,
# synthesised): lookups/s of Index.Lookup and its ratio to a linear scan of
# netip.Prefix.Contains in the same run (x-linear). The target is 1 M
# lookups/s. No root, no network, a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -run '^$' -bench '^Benchmark(Lookup|Contains)60k$' -benchmem -benchtime "${BENCHTIME:-2s}" ./internal/servicetags |
  awk '/^Benchmark/ { print; for (i = 1; i < NF; i++) if ($(i+1) == "lookups/s") { v = $i; if (v < 1000000) bad = 1 } }
       END { if (bad) { print "servicetags: below the target of 1 M lookups/s"; exit 1 } print "servicetags: at or above the target of 1 M lookups/s" }'
