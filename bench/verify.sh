#!/usr/bin/env bash
# What flow verification costs a new TLS flow: new flows a second,
# fqdngate's CPU time per flow on one core, and the time to the server
# having the ClientHello, p50/p99, verify off against enforce, in one run,
# through a gateway in namespaces of its own. fqdngate runs on CPU 0, the
# load side on CPU 1. Root; flags go to bench/verify (e.g. -duration 10s
# -clients 64 -profile /tmp/verify.pprof). make bench runs it too and puts
# its figures into bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "verify: needs root (network namespaces, nftables)" >&2; exit 1; fi
command -v nft >/dev/null && command -v ip >/dev/null || make deps
mkdir -p bin
go build -o bin/fqdngate ./cmd/fqdngate
go build -o bin/bench-verify ./bench/verify
exec taskset -c 1 bin/bench-verify -bin bin/fqdngate -cpu 0 "$@"
