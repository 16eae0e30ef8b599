#!/usr/bin/env bash
# sealpost and Postfix side by side on this machine (issue 9). Needs root and
# Debian's postfix, dovecot-imapd, gnupg (what .ci/run installs). Prints a
# markdown table and keeps it in e2e/bench/out/; the README has the latest.
#   e2e/bench/compare.sh                         # 3 runs per row, 5000 x 4 KB
#   SEALPOST_BENCH_RUNS=1 SEALPOST_BENCH_MESSAGES=2000 e2e/bench/compare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p e2e/bench/out
out="e2e/bench/out/compare-$(date -u +%Y%m%dT%H%M%SZ).md"
go test ./e2e -run '^$' -bench '^BenchmarkVersusPostfix$' -benchtime 1x -timeout 60m | tee "$out.log"
grep -E '^(Disk: |\| )' "$out.log" > "$out"
echo "table: $out"
