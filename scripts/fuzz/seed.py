#!/usr/bin/env python3
"""Adds the fixture-derived seeds of the two byte-level fuzz targets.

The committed corpora keep inputs up to 8 KiB (what the fuzzer found, and
small seeds); larger seeds are rebuilt from the fixtures and the public
corpus by this script: for scan_any a name-selector byte and the file, for
format_forced a format-selector byte and the file (two selectors each).

    python3 scripts/fuzz/seed.py
"""
import hashlib
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAMES = 28  # fuzz_targets/scan_any.rs: NAMES.len()


def main():
    files = []
    for base in ["fixtures", "tests/data/corpus"]:
        for d, _, fs in os.walk(os.path.join(ROOT, base)):
            for f in fs:
                p = os.path.join(d, f)
                if os.path.getsize(p) < 64 << 10 and not f.endswith(".md"):
                    files.append(p)
    files.sort()
    out = os.path.join(ROOT, "fuzz", "corpus")
    for t in ["scan_any", "format_forced"]:
        os.makedirs(os.path.join(out, t), exist_ok=True)
    for i, p in enumerate(files):
        b = open(p, "rb").read()
        data = bytes([i % NAMES]) + b
        open(os.path.join(out, "scan_any", hashlib.sha1(data).hexdigest()), "wb").write(data)
        for k in range(2):
            data = bytes([(i * 7 + k * 13) % 256]) + b
            open(os.path.join(out, "format_forced", hashlib.sha1(data).hexdigest()), "wb").write(data)
    print(len(files), "files seeded")


if __name__ == "__main__":
    main()
