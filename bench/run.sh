#!/usr/bin/env bash
# Benchmarks fqdngate against dnsmasq, dnsmasq --nftset, unbound and
# dnsdist on this machine and writes bench/RESULTS.md, plus the Go
# benchmarks of the hot paths. Root, loopback only, a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "bench: needs root (network namespace, nftables)" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
for t in dnsperf dnsmasq unbound dnsdist taskset; do
  command -v "$t" >/dev/null || { apt-get update -qq; apt-get install -y -qq --no-install-recommends dnsperf dnsmasq-base unbound dnsdist util-linux >/dev/null; break; }
done
mkdir -p bin
go build -o bin/fqdngate ./cmd/fqdngate
go build -o bin/bench-upstream ./bench/upstream
go build -o bin/bench-floor ./bench/floor
go run ./bench/harness -bin bin -out bench/RESULTS.md "$@"
{
  echo
  echo "## Go benchmarks (go test -bench, this machine)"
  echo
  echo '```'
  go test -run '^$' -bench 'Match50k|LedgerRecord|LedgerBytesPerEntry|Walk|AllowOneAnswer|AllowBatch' -benchmem -benchtime 2s \
    ./internal/policy ./internal/ledger ./internal/dnsproxy ./internal/enforce 2>&1 | grep -E '^(Benchmark|ok|PASS)' || true
  echo '```'
} >> bench/RESULTS.md
echo "bench: wrote bench/RESULTS.md"
