#!/usr/bin/env python3
"""Detection and false positives of `probity data` on the sets of make_sets.py.

Usage: eval.py PROBITY_BIN SETS_DIR

A poisoned set counts as detected when a DAT001–DAT004 finding names a
phrase that contains the trigger or is contained in it (the phrase may be
grown along the rows); every other DAT finding is a false positive. Prints a
table per kind, by poison rate, and the rows per second.
"""
import collections
import json
import os
import re
import subprocess
import sys
import time

exe, d = sys.argv[1], sys.argv[2]
man = json.load(open(os.path.join(d, "manifest.json")))
res = collections.defaultdict(lambda: [0, 0, 0])  # detected, sets, false positives
clean = collections.defaultdict(lambda: [0, 0])  # flagged, sets
rows = 0
t0 = time.time()
misses = []
for s in man["sets"]:
    p = os.path.join(d, s["name"] + ".jsonl")
    o = subprocess.run([exe, "data", p, "--format", "json"], capture_output=True, text=True)
    if o.returncode not in (0, 1):
        print(f"{s['name']}: exit {o.returncode}: {o.stderr.strip()}")
        continue
    rows += s["rows"]
    rep = json.loads(o.stdout)
    phrases = []
    for f in rep["files"]:
        for x in f["findings"]:
            if x["rule"].startswith("DAT00") and x["rule"] != "DAT010":
                m = re.search("«(.*?)»", x["message"])
                phrases.append((x["rule"], m.group(1) if m else ""))
    if s["poisoned"]:
        trig = " ".join(re.findall(r"\w+", s["trigger"].lower()))
        hit = [ph for _, ph in phrases if ph and (trig in ph or ph in trig)]
        key = (s["kind"], s["trigger_kind"], s["rate"])
        res[key][1] += 1
        res[key][0] += bool(hit)
        res[key][2] += len(phrases) - len(hit)
        if not hit:
            misses.append((s["name"], phrases))
    else:
        clean[s["kind"]][1] += 1
        clean[s["kind"]][0] += bool(phrases)
        if phrases:
            misses.append((s["name"], phrases))
secs = time.time() - t0
print("| kind | trigger | poison rate | detected | false positives (other phrases) |")
print("|---|---|---:|---:|---:|")
for (k, t, r), (hit, n, fp) in sorted(res.items()):
    print(f"| {k} | {t} | {r:.1%} | {hit}/{n} | {fp} |")
print()
print("| clean set | flagged |")
print("|---|---:|")
for k, (f, n) in sorted(clean.items()):
    print(f"| {k} | {f}/{n} |")
print()
print(f"{rows} rows in {secs:.1f} s, {rows / secs:.0f} rows/s including process start")
for m in misses:
    print("miss or false positive:", m)
