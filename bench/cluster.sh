#!/usr/bin/env bash
# The cluster's benchmarks (DESIGN section 14), in the HA lab: replication
# lag p50/p99 from an answer on gw1 to its element in gw2's kernel at
# 2,000 answers a second (target p99 ≤ 50 ms), measured outside fqdngate
# (netlink monitor of gw2's set) and by gw2's own histogram, and gw1's
# maximum answers a second with and without its cluster section in the
# same run (target: at most 10% fewer). Root; flags go to bench/cluster
# (e.g. -rate 2000 -duration 20s -qps-run 5s -rounds 2). About a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "cluster: needs root (network namespaces, nftables)" >&2; exit 1; fi
command -v nft >/dev/null && command -v ip >/dev/null || make deps
mkdir -p bin
go build -o bin/fqdngate ./cmd/fqdngate
go build -o bin/bench-cluster ./bench/cluster
exec bin/bench-cluster -bin bin/fqdngate "$@"
