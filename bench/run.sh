#!/usr/bin/env bash
# Benchmarks fqdngate against dnsmasq, dnsmasq --nftset, unbound and
# dnsdist on this machine and writes bench/RESULTS.md, plus the Go
# benchmarks of the hot paths. Root, loopback only, a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "bench: needs root (network namespace, nftables)" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
for t in dnsperf resperf dnsmasq unbound dnsdist taskset; do
  command -v "$t" >/dev/null || { apt-get update -qq; apt-get install -y -qq --no-install-recommends dnsperf dnsmasq-base unbound dnsdist util-linux >/dev/null; break; }
done
mkdir -p bin
go build -o bin/fqdngate ./cmd/fqdngate
go build -o bin/bench-upstream ./bench/upstream
go build -o bin/bench-floor ./bench/floor
go build -o bin/bench-verify ./bench/verify
# The Go benchmarks first, so that the report can check them against the
# targets too.
gobench=$(mktemp)
verify=$(mktemp)
trap 'rm -f "$gobench" "$verify"' EXIT
# The machine's CPU counters around them, for the share the hypervisor
# took meanwhile (steal).
sed -n 's/^cpu /before: cpu /p' /proc/stat >"$gobench"
go test -run '^$' -bench 'Match50k|LedgerRecord|LedgerBytesPerEntry|Walk|AllowOneAnswer|AllowBatch' -benchmem -benchtime 2s \
  ./internal/policy ./internal/ledger ./internal/dnsproxy ./internal/enforce 2>&1 | grep -E '^(Benchmark|ok|PASS)' >>"$gobench" || true
sed -n 's/^cpu /after: cpu /p' /proc/stat >>"$gobench"
# Flow verification: new flows through a gateway in namespaces of its
# own, fqdngate on CPU 0 and the load side on CPU 1, as the DNS runs.
taskset -c 1 bin/bench-verify -bin bin/fqdngate -cpu 0 -json "$verify" >&2
go run ./bench/harness -bin bin -out bench/RESULTS.md -gobench "$gobench" -verify "$verify" "$@"
