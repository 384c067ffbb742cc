#!/usr/bin/env bash
# Time Probity against cat/sha256sum and the peer scanners on one large PyTorch
# zip checkpoint.
#
# Usage:
#   scripts/bench/bench_vs_peers.sh [SIZE_GB]        # default 2
#
# Environment:
#   PROBITY        probity binary (default: <repo>/target/release/probity); rows
#                  are skipped with a notice when it is missing
#   PEERS_VENV     peers venv from scripts/peers/setup.sh (default /tmp/probity-peers)
#   BENCH_FILE     checkpoint path (default /tmp/probity-bench-<SIZE_GB>g.pt; built
#                  with scripts/bench/make_checkpoint.py when absent)
#   REPS           runs per command (default 3; the table shows the median wall
#                  time and the largest max-RSS of the runs)
#   BENCH_TIMEOUT  seconds before one run is killed (default 900)
#   PEER_EXTRAS    0 = skip the picklescan and modelscan rows (default 1)
#   BENCH_OUT      also write the markdown table to this file
#
# What runs (stdout of every command goes to /dev/null; page cache warmed first
# with two `cat FILE >/dev/null`):
#   cat FILE                    read floor
#   sha256sum FILE              hashing floor (coreutils; no SHA-NI)
#   openssl dgst -sha256 FILE   hashing floor with SHA-NI, when openssl exists
#   probity scan FILE           default scan
#   probity scan --hash FILE    scan + SHA-256
#   modelaudit scan --no-cache --format json FILE
#       run with PROMPTFOO_DISABLE_TELEMETRY=1 NO_ANALYTICS=1 (modelaudit posts
#       PostHog telemetry to a.promptfoo.app by default and, offline, retries for
#       ~7 s at exit), HF_HUB_OFFLINE=1, DO_NOT_TRACK=1. --no-cache: its scan
#       result cache would otherwise answer repeated runs from ~/.modelaudit.
#       Note modelaudit also computes md5+sha256+sha512 of files under 512 MiB
#       but only a prefix hash above that, so its per-GB cost changes at 512 MiB.
#   picklescan -p FILE
#   modelscan scan -p FILE      (in an empty cwd: no modelscan-settings.toml)
# fickling is not timed: its CLI only reads raw pickle streams and exits 2 on zip
# checkpoints.
#
# Wall time is measured with date +%s.%N around `/usr/bin/time -v` (installed
# with apt-get when missing); max RSS is time's "Maximum resident set size".
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
size="${1:-2}"
probity="${PROBITY:-$repo/target/release/probity}"
venv="${PEERS_VENV:-/tmp/probity-peers}"
file="${BENCH_FILE:-/tmp/probity-bench-${size}g.pt}"
reps="${REPS:-3}"
tmo="${BENCH_TIMEOUT:-900}"
extras="${PEER_EXTRAS:-1}"

die() { echo "bench: $*" >&2; exit 2; }

# --- /usr/bin/time
if [ ! -x /usr/bin/time ]; then
  echo "bench: /usr/bin/time missing, installing the 'time' package"
  if [ "$(id -u)" = 0 ]; then
    (apt-get install -y time >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y time >/dev/null 2>&1; }) \
      || die "apt-get install -y time failed"
  else
    sudo apt-get install -y time >/dev/null 2>&1 || die "need /usr/bin/time (apt-get install time)"
  fi
fi

# --- checkpoint
if [ ! -s "$file" ]; then
  echo "bench: building $file ($size GB) ..."
  python3 "$here/make_checkpoint.py" "$size" "$file" || die "make_checkpoint.py failed"
fi
bytes=$(stat -c %s "$file")
echo "bench: warming page cache ($file, $bytes bytes)"
cat "$file" >/dev/null
cat "$file" >/dev/null

work="$(mktemp -d /tmp/bench-vs-peers.XXXXXX)"
trap 'rm -rf "$work"' EXIT

peer_env=(env PROMPTFOO_DISABLE_TELEMETRY=1 NO_ANALYTICS=1 HF_HUB_OFFLINE=1
          HF_HUB_DISABLE_TELEMETRY=1 DO_NOT_TRACK=1 NO_COLOR=1)

# --- rows: label SEP needs SEP command
rows=()
SEP=$'\x1f'  # not whitespace, so `read` keeps empty fields
add() { rows+=("$1$SEP$2$SEP$3"); }
add "cat" "" "cat '$file'"
add "sha256sum" "" "sha256sum '$file'"
# coreutils sha256sum (9.1 here) does not use the SHA-NI instructions; OpenSSL
# does and is ~5x faster on the same CPU, so it is the realistic hashing floor.
if command -v openssl >/dev/null 2>&1; then
  add "openssl dgst -sha256" "" "openssl dgst -sha256 '$file'"
fi
add "probity scan" "$probity" "'$probity' scan '$file'"
add "probity scan --hash" "$probity" "'$probity' scan --hash '$file'"
add "modelaudit scan" "$venv/bin/modelaudit" "${peer_env[*]} '$venv/bin/modelaudit' scan --no-cache --format json '$file'"
if [ "$extras" = 1 ]; then
  add "picklescan" "$venv/bin/picklescan" "${peer_env[*]} '$venv/bin/picklescan' -p '$file'"
  add "modelscan scan" "$venv/bin/modelscan" "${peer_env[*]} '$venv/bin/modelscan' scan -p '$file'"
fi

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print ""; else if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }

declare -A MED RSS RC RUNS
notices=()
for row in "${rows[@]}"; do
  IFS="$SEP" read -r label needs cmd <<<"$row"
  if [ -n "$needs" ] && [ ! -x "$needs" ]; then
    notices+=("$label: skipped, $needs not found")
    echo "bench: SKIP $label ($needs not found)"
    continue
  fi
  walls=""; maxrss=0; rcs=""
  for i in $(seq 1 "$reps"); do
    tf="$work/time.$i"
    t0=$(date +%s.%N)
    ( cd "$work" && /usr/bin/time -v -o "$tf" timeout "$tmo" bash -c "$cmd" >/dev/null 2>"$work/stderr" )
    rc=$?
    t1=$(date +%s.%N)
    w=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
    # time -v exits with the command's status; 124 = timeout
    r=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tf")
    [ -n "$r" ] && [ "$r" -gt "$maxrss" ] && maxrss=$r
    walls+="$w"$'\n'
    rcs+="$rc "
    echo "bench: $label run $i: ${w}s, rss ${r:-?} KiB, exit $rc"
    if [ "$rc" = 124 ]; then echo "bench:   timed out after ${tmo}s"; break; fi
    if [ "$rc" -ge 2 ] && [ "$label" != "modelscan scan" ]; then
      echo "bench:   stderr tail:"; tail -n 3 "$work/stderr" | sed 's/^/bench:     /'
    fi
  done
  MED[$label]=$(printf '%s' "$walls" | median)
  RSS[$label]=$maxrss
  RC[$label]="$(echo $rcs | tr ' ' '\n' | sort -u | tr '\n' ' ' | sed 's/ $//')"
  RUNS[$label]="$(printf '%s' "$walls" | tr '\n' ' ' | sed 's/ $//')"
done

ratio() {  # a/b with both present
  local a="${MED[$1]:-}" b="${MED[$2]:-}"
  if [ -z "$a" ] || [ -z "$b" ]; then echo "n/a"; return; fi
  awk -v a="$a" -v b="$b" 'BEGIN{ if (b<=0) print "n/a"; else printf "%.2fx", a/b }'
}

ver() { "$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null \
        || "$(dirname "$(readlink -f "$venv/bin/$1")")/python" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null \
        || echo "?"; }

{
  echo "### Probity vs peers on a $(awk -v b="$bytes" 'BEGIN{printf "%.2f", b/1e9}') GB PyTorch zip checkpoint"
  echo
  echo "File: \`$file\` ($bytes bytes), page cache warm; $reps runs each, median wall, largest max-RSS."
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM."
  pv="missing"; [ -x "$probity" ] && pv="$("$probity" --version 2>/dev/null | head -1 | sed "s/^probity //")"
  echo "Versions: probity ${pv:-?}; modelaudit $(ver modelaudit); picklescan $(ver picklescan); modelscan $(ver modelscan)."
  echo
  echo "| command | median wall s | runs s | max RSS MiB | GB/s | exit |"
  echo "|---|---:|---|---:|---:|---|"
  for row in "${rows[@]}"; do
    IFS="$SEP" read -r label needs cmd <<<"$row"
    [ -z "${MED[$label]:-}" ] && continue
    gbs=$(awk -v b="$bytes" -v t="${MED[$label]}" 'BEGIN{ if (t>0) printf "%.2f", b/1e9/t; else print "-" }')
    rss=$(awk -v k="${RSS[$label]}" 'BEGIN{printf "%.0f", k/1024}')
    echo "| \`$label\` | ${MED[$label]} | ${RUNS[$label]} | $rss | $gbs | ${RC[$label]} |"
  done
  echo
  echo "| ratio | value |"
  echo "|---|---:|"
  echo "| probity scan / cat | $(ratio 'probity scan' cat) |"
  echo "| probity scan --hash / sha256sum | $(ratio 'probity scan --hash' sha256sum) |"
  echo "| probity scan --hash / openssl dgst -sha256 | $(ratio 'probity scan --hash' 'openssl dgst -sha256') |"
  echo "| modelaudit / probity scan | $(ratio 'modelaudit scan' 'probity scan') |"
  if [ "$extras" = 1 ]; then
    echo "| picklescan / probity scan | $(ratio picklescan 'probity scan') |"
    echo "| modelscan / probity scan | $(ratio 'modelscan scan' 'probity scan') |"
  fi
  echo
  echo "Exit codes: probity 0 = clean, 1 = findings; modelaudit 1 = issues (it warns on"
  echo "torch._utils._rebuild_tensor_v2 in every torch checkpoint), 2 = inconclusive/error;"
  echo "picklescan/modelscan 0 = clean."
  for n in "${notices[@]}"; do echo "Notice: $n"; done
} | tee "$work/table.md"
[ -n "${BENCH_OUT:-}" ] && cp "$work/table.md" "$BENCH_OUT"
exit 0
