#!/usr/bin/env bash
# The feeds' benchmarks (DESIGN section 12): the ip feed of a group with
# 100,000 live addresses (target ≤ 100 ms), and the push lag at 2,000
# answers a second against the fake PAN-OS and FortiGate APIs over TLS on
# loopback (target p99 ≤ 250 ms). No root needed; about 15 s.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -run '^$' -bench 'FeedIP100k' -benchmem -benchtime 20x ./internal/feeds
go test -run '^$' -bench 'PushLag' -benchtime 5x ./internal/feeds
