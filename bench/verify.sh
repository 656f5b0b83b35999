#!/usr/bin/env bash
# What flow verification costs a new TLS flow: new verified flows a second
# and the time to the server's first byte, verify off against enforce, in
# one run, through a gateway in namespaces of its own. Root; flags go to
# bench/verify (e.g. -duration 10s -clients 32).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "verify: needs root (network namespaces, nftables)" >&2; exit 1; fi
command -v nft >/dev/null && command -v ip >/dev/null || make deps
mkdir -p bin
go build -o bin/fqdngate ./cmd/fqdngate
go build -o bin/bench-verify ./bench/verify
exec bin/bench-verify -bin bin/fqdngate "$@"
