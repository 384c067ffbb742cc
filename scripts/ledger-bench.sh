#!/bin/sh
# Ledger timings: N scans of a tiny model without a ledger (baseline), N with
# --ledger (one record each), then `probity log --verify` and `probity log`
# over the N records.
# Usage: scripts/ledger-bench.sh [N] [PROBITY]
set -eu
N=${1:-1000}
P=${2:-target/release/probity}
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
mkdir "$D/m"
printf '{"model_type": "llama"}' > "$D/m/config.json"
t() { date +%s.%N; }
start=$(t); i=0
while [ "$i" -lt "$N" ]; do "$P" scan "$D/m" > /dev/null; i=$((i + 1)); done
echo "baseline: $N scans without a ledger: $(echo "$(t) - $start" | bc) s"
start=$(t); i=0
while [ "$i" -lt "$N" ]; do "$P" scan "$D/m" --ledger "$D/l.db" > /dev/null; i=$((i + 1)); done
echo "$N scans with --ledger: $(echo "$(t) - $start" | bc) s"
start=$(t)
"$P" log --verify --ledger "$D/l.db"
echo "log --verify over $N records: $(echo "$(t) - $start" | bc) s"
start=$(t)
"$P" log --ledger "$D/l.db" > /dev/null
echo "log (text history) over $N records: $(echo "$(t) - $start" | bc) s"
