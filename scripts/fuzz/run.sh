#!/usr/bin/env bash
# Runs Probity's cargo-fuzz targets, one after the other, each for SECONDS.
#
#   scripts/fuzz/run.sh SECONDS [TARGET ...]     # default: every target
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz
# --version 0.13.2 --locked`). Per input: 10 s (-timeout) and 2 GiB
# (-rss_limit_mb); a crash, timeout or out-of-memory stops the target and
# leaves its reproducer in fuzz/artifacts/TARGET/. New inputs go to
# fuzz/corpus/TARGET/ (minimise with `cargo +nightly fuzz cmin TARGET`).
# The last lines of each run (executions, coverage, features) are kept in
# fuzz/runs/TARGET.log. SMOKE=1 (what .ci/run does): run over a temporary
# copy of each corpus and keep no log, so the checkout stays as it was.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:?seconds per target}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(pickle_grammar zip_headers scan_any format_forced gguf_arrays)
fi
cd fuzz
cargo +nightly fuzz build -O
mkdir -p runs
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log="runs/$t.log"
  corpus="corpus/$t"
  if [ "${SMOKE:-0}" = 1 ]; then
    log=$(mktemp)
    corpus=$(mktemp -d)
    cp -r "corpus/$t/." "$corpus/"
  fi
  echo "fuzz: $t for ${secs}s" >&2
  set +e
  cargo +nightly fuzz run -O "$t" "$corpus" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=1048576 \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  tail -n 25 "$log" | grep -E "^(stat::|#[0-9]+.*(DONE|pulse))|SUMMARY|ERROR" >&2 || true
  if [ $rc -ne 0 ]; then
    echo "fuzz: $t failed (exit $rc); see $log and fuzz/artifacts/$t/" >&2
    exit $rc
  fi
done
