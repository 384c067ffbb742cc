#!/usr/bin/env bash
# Install the peer scanners Probity is compared against into one virtualenv.
#
# Usage:
#   scripts/peers/setup.sh [--freeze]
#
# Environment:
#   PEERS_VENV      venv location (default /tmp/probity-peers)
#   PEERS_PYTHON    interpreter used to create the venv (default: python3.11 if
#                   present, else python3). modelscan needs Python < 3.13,
#                   modelaudit < 3.14, picklescan >= 3.11.
#   PEERS_UNPINNED  =1: ignore scripts/peers/requirements.txt and take the newest
#                   releases (use with --freeze to re-pin).
#   PEERS_ONLY      space-separated subset to install, e.g. "picklescan fickling"
#
#   --freeze        after installing, rewrite scripts/peers/requirements.txt and
#                   requirements-modelscan.txt from `pip freeze` (keeps the headers).
#
# Each peer is installed in its own `pip install` so one failure does not stop the
# others; the summary at the end says which ones are usable. Exit status is 0 when
# at least one peer installed, 1 otherwise.
#
# Peers and the extras they need for the formats we compare on:
#   picklescan[7z]          py7zr for .7z archives
#   fickling                pure Python; the CLI only parses raw pickle streams
#   modelscan[h5py]         h5py for Keras .h5 (tensorflow extra deliberately not
#                           installed: ~600 MB, only needed for SavedModel/Keras ops).
#                           modelscan 0.8.8 calls numpy.lib.format._check_version,
#                           which numpy 2.3 removed (every .npy/.npz scan errors),
#                           while modelaudit needs numpy>=2.4.3 on Python 3.11. So
#                           modelscan gets its own venv, $PEERS_VENV/modelscan-venv,
#                           with numpy<2.3 (pins: requirements-modelscan.txt), and
#                           $PEERS_VENV/bin/modelscan is a symlink to its script.
#   aisbom-cli              a newer scanner with CycloneDX/SPDX output; run by
#                           compare.py offline with telemetry off (AISBOM_OFFLINE=1,
#                           AISBOM_NO_TELEMETRY=1)
#   modelaudit[sevenzip,h5] py7zr + h5py; torch/tensorflow/onnx extras not
#                           installed (only needed to load those formats).
#
# Notes on modelaudit: it sends PostHog telemetry to a.promptfoo.app by default
# (and retries for ~7 s when the network is unreachable). compare.py and
# bench_vs_peers.sh run it with PROMPTFOO_DISABLE_TELEMETRY=1 NO_ANALYTICS=1 and
# --no-cache; do the same when running it by hand.
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${PEERS_VENV:-/tmp/probity-peers}"
req="$here/requirements.txt"
freeze=0
for a in "$@"; do
  case "$a" in
    --freeze) freeze=1 ;;
    -h|--help) sed -n '2,42p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument $a" >&2; exit 2 ;;
  esac
done

if [ -n "${PEERS_PYTHON:-}" ]; then
  py="$PEERS_PYTHON"
elif command -v python3.11 >/dev/null 2>&1; then
  py=python3.11
else
  py=python3
fi
pyver="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" || {
  echo "setup.sh: cannot run $py" >&2; exit 1; }
echo "setup.sh: using $py ($pyver), venv $venv"
case "$pyver" in
  3.11|3.12) ;;
  *) echo "setup.sh: WARNING: Python $pyver: modelscan needs 3.10-3.12, picklescan >= 3.11; some peers may fail to install" ;;
esac

if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv" || { echo "setup.sh: venv creation failed" >&2; exit 1; }
fi
pip="$venv/bin/python -m pip"
$pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true

req_ms="$here/requirements-modelscan.txt"
ms_venv="$venv/modelscan-venv"
constraint=()
constraint_ms=()
if [ "${PEERS_UNPINNED:-0}" != 1 ]; then
  [ -f "$req" ] && constraint=(-c "$req")
  [ -f "$req_ms" ] && constraint_ms=(-c "$req_ms")
fi

install_peer() {  # name spec -> 0/1, output to the log
  local name="$1" s="$2"
  if [ "$name" = modelscan ]; then
    if [ ! -x "$ms_venv/bin/python" ]; then
      "$py" -m venv "$ms_venv" || return 1
      "$ms_venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip || true
    fi
    "$ms_venv/bin/python" -m pip install --disable-pip-version-check "${constraint_ms[@]}" "$s" 'numpy<2.3' \
      && [ -x "$ms_venv/bin/modelscan" ] \
      && ln -sfn "$ms_venv/bin/modelscan" "$venv/bin/modelscan"
  else
    $pip install --disable-pip-version-check "${constraint[@]}" "$s" && [ -x "$venv/bin/$name" ]
  fi
}

declare -A spec=(
  [picklescan]='picklescan[7z]'
  [fickling]='fickling'
  [modelscan]='modelscan[h5py]'
  [modelaudit]='modelaudit[sevenzip,h5]'
  [aisbom]='aisbom-cli'
)
order="${PEERS_ONLY:-picklescan fickling modelscan modelaudit aisbom}"
ok=()
failed=()
logdir="$venv/install-logs"
mkdir -p "$logdir"
for name in $order; do
  s="${spec[$name]:-}"
  if [ -z "$s" ]; then echo "setup.sh: unknown peer $name, skipped"; continue; fi
  echo "setup.sh: installing $s ..."
  if install_peer "$name" "$s" >"$logdir/$name.log" 2>&1; then
    ok+=("$name")
  else
    echo "setup.sh: FAILED to install $name (log: $logdir/$name.log); continuing"
    tail -n 5 "$logdir/$name.log" | sed 's/^/    /'
    failed+=("$name")
  fi
done

freeze_to() {  # python target
  local tmp
  tmp="$(mktemp)"
  grep '^#' "$2" 2>/dev/null >"$tmp" || true
  "$1" -m pip freeze --disable-pip-version-check | grep -v '^-e ' >>"$tmp"
  mv "$tmp" "$2"
  echo "setup.sh: wrote $2"
}
if [ "$freeze" = 1 ]; then
  freeze_to "$venv/bin/python" "$req"
  [ -x "$ms_venv/bin/python" ] && freeze_to "$ms_venv/bin/python" "$req_ms"
fi

echo
echo "Peer versions in $venv:"
for name in picklescan fickling modelscan modelaudit; do
  vpy="$venv/bin/python"
  [ "$name" = modelscan ] && vpy="$ms_venv/bin/python"
  v="$("$vpy" -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null)"
  printf '  %-11s %s\n' "$name" "${v:-NOT INSTALLED}"
done
[ ${#failed[@]} -gt 0 ] && echo "Failed: ${failed[*]}"
[ ${#ok[@]} -gt 0 ]
