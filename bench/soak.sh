#!/usr/bin/env bash
# A 30-minute soak of fqdngate in the CDN lab: a steady mixed load, floods
# of random names under an allowed wildcard, upstream outages. Prints the
# daemon's RSS, goroutines and ledger size every minute and a table at the
# end. Root; every packet stays in the lab's namespaces. Flags go to
# bench/soak (e.g. -duration 5m).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "soak: needs root (network namespaces, nftables)" >&2; exit 1; fi
command -v nft >/dev/null && command -v ip >/dev/null || make deps
mkdir -p bin
go build -o bin/fqdngate ./cmd/fqdngate
go build -o bin/soak ./bench/soak
exec bin/soak -bin bin/fqdngate "$@"
