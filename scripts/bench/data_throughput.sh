#!/usr/bin/env bash
# Rows per minute and peak memory of `probity data` on about 1.3 M rows of
# generated instruction data (scripts/data/make_sets.py, two seeds,
# concatenated), beside `wc -l` and Python's json module reading the same
# file once, for scale.
# Usage: scripts/bench/data_throughput.sh [PROBITY_BIN]
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="${1:-target/release/probity}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 scripts/data/make_sets.py "$work/a" --seed 21 >/dev/null
python3 scripts/data/make_sets.py "$work/b" --seed 22 >/dev/null
cat "$work"/a/*.jsonl "$work"/b/*.jsonl > "$work/big.jsonl"
rows=$(wc -l < "$work/big.jsonl")
echo "rows: $rows, bytes: $(stat -c %s "$work/big.jsonl")"
/usr/bin/time -f "probity data: %e s wall, %M KiB peak RSS" "$bin" data "$work/big.jsonl" --format json -o "$work/r.json" || true
/usr/bin/time -f "python json.loads per line: %e s wall, %M KiB peak RSS" \
  python3 -c "import json,sys; n=sum(1 for l in open(sys.argv[1]) if json.loads(l)); print(n, 'rows parsed')" "$work/big.jsonl"
