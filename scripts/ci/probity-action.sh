#!/usr/bin/env bash
# Runs `probity scan` for CI: writes a SARIF report, prints a short summary,
# and hands the scan's exit code to later steps. Used by the GitHub Action
# (action.yml at the repository root) and runnable anywhere else.
#
# Inputs (environment variables, all optional):
#   PROBITY_PATHS           paths or hf:// URIs, separated by whitespace (default: .)
#                           No glob expansion and no quoting: pass directories
#                           rather than patterns; a path may not contain spaces.
#   PROBITY_FAIL_ON         critical | warning | info; empty: probity's default
#                           (fail_on from the config, else warning)
#   PROBITY_CONFIG          policy file passed as --config
#   PROBITY_SARIF           SARIF file to write (default: probity.sarif)
#   PROBITY_EXTRA_ARGS      further `probity scan` options, split on whitespace
#   PROBITY_BIN             the probity executable (default: probity)
#   PROBITY_EXIT_CODE_FILE  file that receives the exit code (default: SARIF.exit-code)
#   GITHUB_OUTPUT           if set, gets exit-code=N and sarif=PATH (the latter
#                           only when the SARIF file was written)
#   GITHUB_STEP_SUMMARY     if set, gets a Markdown summary (needs python3)
#
# Exit status: the scan's own (0 clean, 1 findings at or above the gate,
# 2 an input could not be scanned or a usage error).

set -euo pipefail

bin="${PROBITY_BIN:-probity}"
sarif="${PROBITY_SARIF:-probity.sarif}"
fail_on="${PROBITY_FAIL_ON:-}"
config="${PROBITY_CONFIG:-}"
exit_code_file="${PROBITY_EXIT_CODE_FILE-${sarif}.exit-code}"

paths=()
read -r -a paths <<<"${PROBITY_PATHS:-}" || true
if [ "${#paths[@]}" -eq 0 ]; then
    paths=(.)
fi

extra=()
read -r -a extra <<<"${PROBITY_EXTRA_ARGS:-}" || true

args=(scan --format sarif --output "$sarif")
if [ -n "$fail_on" ]; then
    args+=(--fail-on "$fail_on")
fi
if [ -n "$config" ]; then
    args+=(--config "$config")
fi
# ${extra[@]+...}: an empty array is an unbound variable under `set -u` in bash < 4.4.
args+=(${extra[@]+"${extra[@]}"} -- "${paths[@]}")

# A SARIF file left by an earlier run must not be uploaded as this run's.
rm -f -- "$sarif"

printf 'probity:'
printf ' %q' "$bin" "${args[@]}"
printf '\n'

status=0
"$bin" "${args[@]}" || status=$?

if [ -n "$exit_code_file" ]; then
    printf '%s\n' "$status" >"$exit_code_file"
fi
if [ -n "${GITHUB_OUTPUT:-}" ]; then
    {
        printf 'exit-code=%s\n' "$status"
        if [ -f "$sarif" ]; then
            printf 'sarif=%s\n' "$sarif"
        fi
    } >>"$GITHUB_OUTPUT"
fi

case "$status" in
    0) verdict=clean ;;
    1) verdict=flagged ;;
    *) verdict=error ;;
esac

if [ ! -f "$sarif" ]; then
    echo "probity: no SARIF report was written (exit code $status, verdict: $verdict)"
elif ! command -v python3 >/dev/null 2>&1; then
    echo "probity: exit code $status, verdict: $verdict; SARIF report: $sarif (python3 not found: no summary)"
else
    # The summary is informative only: its failure must not change the outcome.
    python3 - "$sarif" "$status" "$verdict" "${fail_on:-default}" <<'PY' || echo "probity: could not summarise $sarif"
import json
import os
import sys

sarif_path, status, verdict, gate = sys.argv[1:5]
with open(sarif_path, encoding="utf-8") as f:
    log = json.load(f)

labels = {"error": "critical", "warning": "warning", "note": "info"}
counts = {"critical": 0, "warning": 0, "info": 0}
rows = []
errors = []
for run in log.get("runs", []):
    for result in run.get("results", []):
        severity = labels.get(result.get("level", "warning"), "info")
        counts[severity] += 1
        where = ""
        locations = result.get("locations") or []
        if locations:
            where = (
                locations[0].get("physicalLocation", {}).get("artifactLocation", {}).get("uri", "")
            )
            for logical in locations[0].get("logicalLocations") or []:
                name = logical.get("fullyQualifiedName") or logical.get("name")
                if name:
                    where += " :: " + name
        message = result.get("message", {}).get("text", "")
        rows.append((severity, result.get("ruleId", "?"), where, message))
    for invocation in run.get("invocations", []):
        for note in invocation.get("toolExecutionNotifications", []):
            if note.get("level", "error") == "error":
                errors.append(note.get("message", {}).get("text", ""))

order = {"critical": 0, "warning": 1, "info": 2}
rows.sort(key=lambda row: order[row[0]])
line = (
    f"{counts['critical']} critical, {counts['warning']} warning, {counts['info']} info, "
    f"{len(errors)} error(s)"
)
print(f"probity: verdict {verdict.upper()} (exit code {status}, gate: {gate}): {line}")
for severity, rule, where, message in rows[:50]:
    print(f"  {severity.upper():8} {rule}  {where}")
if len(rows) > 50:
    print(f"  ... and {len(rows) - 50} more in {sarif_path}")
for text in errors:
    print(f"  ERROR    {text}")

summary = os.environ.get("GITHUB_STEP_SUMMARY")
if summary:
    def cell(text, limit=200):
        text = " ".join(text.split())
        if len(text) > limit:
            text = text[: limit - 1] + "…"
        return text.replace("|", "\\|")

    icon = {"clean": "✅", "flagged": "❌"}.get(verdict, "⚠️")
    out = [
        "## Probity model scan",
        "",
        f"{icon} **Verdict: {verdict}** (exit code {status}, gate: `{gate}`)",
        "",
        "| critical | warning | info | errors |",
        "|---:|---:|---:|---:|",
        f"| {counts['critical']} | {counts['warning']} | {counts['info']} | {len(errors)} |",
        "",
    ]
    if rows:
        out += ["| severity | rule | location | message |", "|---|---|---|---|"]
        for severity, rule, where, message in rows[:20]:
            out.append(f"| {severity} | {rule} | {cell(where, 120)} | {cell(message)} |")
        if len(rows) > 20:
            out.append(f"\n{len(rows) - 20} more in `{sarif_path}`.")
        out.append("")
    for text in errors:
        out.append(f"- error: {cell(text)}")
    if errors:
        out.append("")
    with open(summary, "a", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
PY
fi

exit "$status"
