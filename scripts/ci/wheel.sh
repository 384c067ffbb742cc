#!/usr/bin/env bash
# `pip install probity`: builds the binary wheel with maturin (pinned in
# .ci/requirements-wheel.txt, installed into .ci/venv-wheel), installs it
# into a fresh venv and scans with the installed command: the malicious
# fixture must fail the scan (exit 1), a clean model pass it (exit 0).
# Prints the wheel's size and the install time. Run by .ci/run after the
# test suite (it reuses the suite's release build: only the final link runs
# again, stripped).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -x .ci/venv-wheel/bin/maturin ]; then
  python3 -m venv .ci/venv-wheel
  .ci/venv-wheel/bin/pip install -q --disable-pip-version-check -r .ci/requirements-wheel.txt
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
.ci/venv-wheel/bin/maturin build --release --locked -o "$out/wheels" >"$out/build.log" 2>&1 \
  || { cat "$out/build.log"; exit 1; }
whl="$(ls "$out"/wheels/probity-*.whl)"
python3 -m venv "$out/v"
t0=$(date +%s%N)
"$out/v/bin/pip" install -q --disable-pip-version-check --no-index "$whl"
t1=$(date +%s%N)
echo "wheel: $(basename "$whl"), $(stat -c %s "$whl") bytes; pip install: $(( (t1 - t0) / 1000000 )) ms"
rc=0
"$out/v/bin/probity" scan fixtures/malicious/pytorch/zip_datapkl_os_system.pt >/dev/null || rc=$?
if [ "$rc" -ne 1 ]; then
  echo "wheel: the installed probity gave exit $rc on a malicious pickle (expected 1)" >&2
  exit 1
fi
"$out/v/bin/probity" scan fixtures/zoo/base/model.safetensors
echo "wheel: the installed probity flags the malicious fixture and passes the clean model"
