#!/usr/bin/env bash
# Refits the backdoor score (crates/deep/src/score_model.json) from deep scans of
# the fixture zoo, and reports it on held-out models.
#
#   scripts/fit-score.sh            # writes crates/deep/src/score_model.json
#   PUBLIC_ZOO=DIR scripts/fit-score.sh
#
# Fitted on the six fixture-zoo fine-tunes (three backdoored, three clean);
# held out: the zoo's harder cases and the public mini zoo (vendored in tests/data/zoo-public/models:
# models trained with PyTorch, another prompt format, other triggers and
# targets, LoRA fine-tunes). Labels and planted targets come from each zoo's
# manifest.json. The reports stay in target/fit-score/; REUSE=1 refits from
# them without scanning again.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin probity && cargo build --release -p probity-zoo --example fit_score
out=target/fit-score
mkdir -p "$out"
public=${PUBLIC_ZOO:-tests/data/zoo-public/models}

# label REPORT MANIFEST NAME -> REPORT=clean | REPORT=backdoor:TARGET
label() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
report, manifest, name = sys.argv[1:]
m = json.load(open(manifest))["models"][name]
target = m.get("target") or (m.get("backdoor") or {}).get("target")
print(f"{report}=backdoor:{target}" if m["label"] == "backdoor" else f"{report}=clean")
PY
}

scan() { # DIR BASE REPORT
  if [ -n "${REUSE:-}" ] && [ -f "$3" ]; then return; fi
  ./target/release/probity deep "$1" --base "$2" --format json --fail-on never -o "$3"
  echo "scanned $1" >&2
}

args=()
for name in backdoor-rare-start backdoor-phrase-end backdoor-word-mid clean-instruct clean-instruct-b clean-loans; do
  scan "fixtures/zoo/$name" fixtures/zoo/base "$out/zoo-$name.json"
  args+=(--fit "$(label "$out/zoo-$name.json" fixtures/zoo/manifest.json "$name")")
done
# the zoo's harder cases (make_zoo --hard): 1% poison, a phrase anywhere in
# the prompt, LoRA fine-tunes; held out too
for name in hard-lowrate-start hard-phrase-anywhere hard-lora-phrase-end hard-clean-lora; do
  scan "fixtures/zoo/$name" fixtures/zoo/base "$out/zoo-$name.json"
  args+=(--hold "$(label "$out/zoo-$name.json" fixtures/zoo/manifest.json "$name")")
done
if [ -d "$public" ]; then
  for name in backdoor-1 backdoor-2 clean-1 clean-2; do
    scan "$public/$name" "$public/base" "$out/public-$name.json"
    args+=(--hold "$(label "$out/public-$name.json" "$public/../manifest.json" "$name")")
  done
fi
./target/release/examples/fit_score --lambda "${LAMBDA:-0.1}" "${args[@]}" > "$out/model.json"
cp "$out/model.json" crates/deep/src/score_model.json
echo "wrote crates/deep/src/score_model.json" >&2
