#!/usr/bin/env bash
# Times `probity deep` on a model of about half a billion parameters: two
# random-initialised llama checkpoints (0.41 B parameters, 0.8 GB each in
# bf16; tools/zoo/examples/make_big_llama.rs), suspect against base, with the budget
# given (default 300 s). Prints the wall time, the peak RSS, and what the
# budget let the scan cover (probes run, vocabulary scanned, searches done).
#
#   scripts/bench/deep_0_5b.sh                 # CPU
#   DEVICE=cuda FEATURES=cuda scripts/bench/deep_0_5b.sh
#   BUDGET=600 scripts/bench/deep_0_5b.sh
#   LAYERS=23 HIDDEN=2048 scripts/bench/deep_0_5b.sh   # 1.01 B parameters (2 GB each in bf16)
set -euo pipefail
cd "$(dirname "$0")/../.."
layers=${LAYERS:-16}
hidden=${HIDDEN:-1536}
dir=${BIG_DIR:-${TMPDIR:-/tmp}/probity-big-llama-$layers-$hidden}
features=${FEATURES:+--features $FEATURES}
# shellcheck disable=SC2086
cargo build --release --bin probity $features && cargo build --release -p probity-zoo --example make_big_llama
[ -f "$dir/suspect/model.safetensors" ] || ./target/release/examples/make_big_llama "$dir" --layers "$layers" --hidden "$hidden"
out="$dir/report.json"
/usr/bin/time -v ./target/release/probity deep "$dir/suspect" --base "$dir/base" \
  --device "${DEVICE:-cpu}" --budget "${BUDGET:-300}" --fail-on never \
  --format json -o "$out" 2> "$dir/time.txt" || true
grep -E "Elapsed|Maximum resident" "$dir/time.txt"
python3 - "$out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["signals"]["trigger"]
b = r["signals"]["behavior"]
print("verdict", r["verdict"], "score", round(r["score"], 3))
print("timings", {k: round(v, 1) for k, v in r.get("timings", {}).items()})
if "error" in t:
    print("trigger search:", t["error"])
else:
    print(f"vocabulary scanned {t['vocabulary_scanned']}/{t['vocabulary_size']}, "
          f"first tokens {t['first_tokens_tried']}, searches {t['searches_done']}/{t['searches_planned']}, "
          f"steps {t['optimisation_steps']}, budget exhausted {t['budget_exhausted']}")
print("behaviour keys:", sorted(b)[:8] if isinstance(b, dict) else type(b).__name__)
PY
