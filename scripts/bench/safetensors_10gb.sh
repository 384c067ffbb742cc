#!/usr/bin/env bash
# Scans a 10 GB safetensors file (sparse: one U8 tensor over the whole data
# section) and prints the wall time of `probity scan` next to `cat` of its
# first 64 MiB, showing that the scan reads the header only.
# Usage: scripts/bench/safetensors_10gb.sh [path/to/probity]
set -euo pipefail
PROBITY=${1:-target/release/probity}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
f="$dir/model.safetensors"
python3 - "$f" <<'PY'
import json, struct, sys
n = 10 * 1000**3
h = json.dumps({"__metadata__": {"format": "pt"},
                "w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    f.truncate(8 + len(h) + n)
PY
ls -l "$f"
for i in 1 2 3; do
  /usr/bin/time -f "probity scan: %e s, max RSS %M KiB" "$PROBITY" scan "$f" >/dev/null
done
/usr/bin/time -f "head -c 64MiB | cat: %e s" sh -c "head -c 67108864 '$f' >/dev/null"
