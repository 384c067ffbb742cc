#!/usr/bin/env bash
# Times `probity diff` on two synthetic models of SIZE_MB each (default 500):
# one safetensors file of F32 matrices, the second model's bytes differing
# from the first's, plus config.json and tokenizer_config.json. The diff
# hashes both folders and reads the headers; --no-spectral unless SPECTRAL=1.
#   PROBITY=target/release/probity SIZE_MB=500 scripts/bench-diff.sh
set -euo pipefail
PROBITY=${PROBITY:-target/release/probity}
SIZE_MB=${SIZE_MB:-500}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
python3 - "$DIR" "$SIZE_MB" <<'PY'
import json, os, struct, sys
d, mb = sys.argv[1], int(sys.argv[2])
side = 1024
per = side * side * 4
n = max(1, mb * (1 << 20) // per)
for name, seed in (("old", 1), ("new", 2)):
    p = os.path.join(d, name)
    os.makedirs(p)
    header = {f"model.layers.{i}.weight": {"dtype": "F32", "shape": [side, side],
              "data_offsets": [i * per, (i + 1) * per]} for i in range(n)}
    h = json.dumps(header).encode()
    with open(os.path.join(p, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        block = os.urandom(per) if seed == 1 else bytes(reversed(os.urandom(per)))
        for _ in range(n):
            f.write(block)
    json.dump({"model_type": "llama"}, open(os.path.join(p, "config.json"), "w"))
    json.dump({"chat_template": "{{ messages }}"}, open(os.path.join(p, "tokenizer_config.json"), "w"))
PY
du -sh "$DIR"/old "$DIR"/new
args=(--no-spectral)
[ "${SPECTRAL:-0}" = 1 ] && args=()
sync
start=$(date +%s.%N)
"$PROBITY" diff "$DIR/old" "$DIR/new" "${args[@]}" | head -1 || true
end=$(date +%s.%N)
echo "diff of two ${SIZE_MB} MB models: $(echo "$end - $start" | bc) s (page cache warm from writing)"
