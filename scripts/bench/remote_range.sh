#!/usr/bin/env bash
# Remote scans read in place (HTTP range requests) against full downloads,
# side by side, on sparse repositories of 4 GB and 20 GB (safetensors shards
# and index, a PyTorch zip, a GGUF file, a malicious training_args.bin)
# served by a loopback Hub server (scripts/bench/hub_server.py, sendfile).
# For each: bytes sent by the server, requests, wall time, exit code; and a
# local scan of the same folder for scale. The full download writes the
# repository into a temporary Hugging Face cache (needs that much free disk).
# Usage: scripts/bench/remote_range.sh [PROBITY_BIN] [SIZES_GB...]
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="$(realpath "${1:-target/release/probity}")"
shift || true

[ $# -gt 0 ] && sizes=("$@") || sizes=(4 20)
work="$(mktemp -d)"
srv=""
cleanup() {
  [ -n "$srv" ] && kill "$srv" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

stats() { curl -s "http://127.0.0.1:$port/_stats?reset=${1:-0}"; }

run() { # label args...
  local label="$1"
  shift
  rm -rf "$work/cache"
  stats 1 >/dev/null
  local t0 t1 code=0
  t0=$(date +%s.%N)
  HF_ENDPOINT="http://127.0.0.1:$port" HF_HUB_CACHE="$work/cache" HF_HOME="$work/home" \
    "$bin" scan "$@" --format json -o "$work/out.json" 2>"$work/err" || code=$?
  t1=$(date +%s.%N)
  local s
  s=$(stats)
  python3 - "$label" "$t0" "$t1" "$code" "$s" "$total" <<'EOF'
import json, sys
label, t0, t1, code, s, total = sys.argv[1:]
s = json.loads(s)
b, total = s["bytes"], int(total)
print(f"| {label} | {b:,} | {100 * b / total:.4f}% | {s['requests']} | {float(t1) - float(t0):.2f} s | {code} |")
EOF
  tail -n 2 "$work/err" | sed 's/^/    /' >&2
}

echo "| run | bytes sent | of repository | requests | wall | exit |"
echo "|---|---|---|---|---|---|"
for gb in "${sizes[@]}"; do
  rm -rf "$work/root"
  mkdir -p "$work/root/bench"
  python3 scripts/bench/make_sparse_repo.py "$gb" "$work/root/bench/repo-$gb"
  total=$(du -b --apparent-size -s "$work/root/bench/repo-$gb" | cut -f1)
  [ -n "$srv" ] && kill "$srv" 2>/dev/null || true
  rm -f "$work/port"
  python3 scripts/bench/hub_server.py "$work/root" "$work/port" &
  srv=$!
  while [ ! -s "$work/port" ]; do sleep 0.1; done
  port=$(cat "$work/port")
  t0=$(date +%s.%N)
  code=0
  "$bin" scan "$work/root/bench/repo-$gb" --format json -o "$work/local.json" 2>/dev/null || code=$?
  t1=$(date +%s.%N)
  printf '| %s GB: local scan of the folder | - | - | - | %s s | %s |\n' "$gb" "$(python3 -c "print(f'{$t1 - $t0:.2f}')")" "$code"
  run "$gb GB: in place (range requests)" "hf://bench/repo-$gb"
  run "$gb GB: full download (--download)" --download "hf://bench/repo-$gb"
done
