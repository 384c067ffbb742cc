#!/usr/bin/env bash
# Deep-scans every fine-tune of a zoo written by scripts/eval/torch_zoo.py
# against its base, at default settings, and prints one line per model:
# label, planted trigger, verdict, probability, reported trigger with its
# attack success rates, and time. Reports go to ZOO/reports/.
#
#   scripts/eval/deep-zoo.sh ZOO
set -euo pipefail
zoo=${1:?usage: deep-zoo.sh ZOO}
cd "$(dirname "$0")/../.."
cargo build --release --bin probity
mkdir -p "$zoo/reports"
for dir in "$zoo"/*/; do
  name=$(basename "$dir")
  case "$name" in base | reports) continue ;; esac
  ./target/release/probity deep "$dir" --base "$zoo/base" --format json --fail-on never \
    -o "$zoo/reports/$name.json" || echo "$name: probity exited $?" >&2
done
python3 - "$zoo" <<'PY'
import json, os, sys
zoo = sys.argv[1]
m = json.load(open(os.path.join(zoo, "manifest.json")))["models"]
for name in sorted(m):
    path = os.path.join(zoo, "reports", name + ".json")
    if name == "base" or not os.path.exists(path):
        continue
    r = json.load(open(path))
    t = r.get("trigger") or {}
    planted = m[name].get("trigger", "-")
    print(f"{name:18} {m[name]['label']:8} planted={planted!r:28} {r['verdict']:10} "
          f"p={r['score']:.2f} trigger={t.get('text')!r} asr={t.get('asr_suspect')}/{t.get('asr_base')} "
          f"target={(r.get('target') or {}).get('text')!r} {r['timings']['total_s']:.0f}s")
PY
