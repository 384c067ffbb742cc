#!/usr/bin/env bash
# Time and peak memory of `probity scan` on a large ONNX file whose weights
# are inline (one 1 GiB initializer in raw_data, plus a small graph).
# Needs a venv with `onnx` and `numpy` (fixtures/formats/requirements.txt):
#   FXVENV=/tmp/fxvenv scripts/bench/onnx_large.sh [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${FXVENV:-/tmp/fxvenv}/bin/python"
MIB="${1:-1024}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
"$PY" - "$OUT/big.onnx" "$MIB" <<'PYEOF'
import sys, numpy as np, onnx
from onnx import helper, TensorProto
path, mib = sys.argv[1], int(sys.argv[2])
n = mib * (1 << 20) // 4
w = helper.make_tensor("w", TensorProto.FLOAT, [n], np.zeros(n, np.float32).tobytes(), raw=True)
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])
g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "big", [x], [y], [w])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
with open(path, "wb") as f:
    f.write(m.SerializeToString())
PYEOF
ls -l "$OUT/big.onnx"
cargo build --release -q
# warm the page cache, then measure
cat "$OUT/big.onnx" > /dev/null
/usr/bin/time -f "wall %e s, peak RSS %M KiB" ./target/release/probity scan "$OUT/big.onnx"
