#!/usr/bin/env bash
# Signature verification time: `probity verify` against OpenSSF model
# signing's own `model_signing verify key`, side by side on the same model,
# alternating, page cache warm (both read every byte again).
#
#   scripts/bench/verify_vs_model_signing.sh [GIB] [FILES] [RUNS]
#
# GIB (default 2) of random bytes in FILES (default 4) files; RUNS (default
# 3) of each tool. Needs model_signing in $PROBITY_SIGNING_BIN (default
# .ci/venv/bin, which .ci/run installs), openssl, and a release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
gib=${1:-2}
files=${2:-4}
runs=${3:-3}
bin=${PROBITY_SIGNING_BIN:-$PWD/.ci/venv/bin}
probity=${PROBITY:-$PWD/target/release/probity}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/model"
per=$((gib * 1024 / files))
for i in $(seq 1 "$files"); do
  head -c "$((per * 1024 * 1024))" /dev/urandom >"$work/model/shard-$i.safetensors"
done
printf '{"model_type": "llama"}' >"$work/model/config.json"
openssl ecparam -name prime256v1 -genkey -noout -out "$work/k.pem" 2>/dev/null
openssl ec -in "$work/k.pem" -pubout -out "$work/k.pub" 2>/dev/null
"$probity" sign "$work/model" --key "$work/k.pem" --signature "$work/model.sig" >/dev/null
cat "$work"/model/* >/dev/null # warm the page cache
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; e=$(date +%s.%N); echo "$e - $s" | bc; }
echo "model: ${gib} GiB in $files files + config.json; $(nproc) cores; $runs runs each"
p=(); m=()
for _ in $(seq 1 "$runs"); do
  p+=("$(t "$probity" verify "$work/model" --signature "$work/model.sig" --key "$work/k.pub")")
  m+=("$(t "$bin/model_signing" verify key "$work/model" --signature "$work/model.sig" --public_key "$work/k.pub")")
done
printf 'probity verify           %s s\n' "${p[*]}"
printf 'model_signing verify key %s s\n' "${m[*]}"
