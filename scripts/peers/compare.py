#!/usr/bin/env python3
"""Compare Probity's verdicts with peer scanners on a labelled corpus.

Usage (from the repo root):

    scripts/peers/setup.sh                       # once: peers into /tmp/probity-peers
    cargo build --release                        # once: target/release/probity
    python3 scripts/peers/compare.py --csv /tmp/compare.csv
    python3 scripts/peers/compare.py --tools picklescan,modelaudit --formats pickle,zip
    python3 scripts/peers/compare.py --formats all --no-fixtures --by-format

Inputs
  * the public corpus, default tests/data/corpus (vendored) relative to the repo root
    (--corpus). Its labels.json maps a relative path to
    {"expect": "critical|warning|clean", "malicious": true|false|null, "format": ...}.
  * the repo's fixtures/manifest.json when present (--fixtures, --no-fixtures):
    path relative to fixtures/ -> {"expect", "format", "family"}.
  Both are filtered by --formats (comma list, or "all"; default: pickle,
  pytorch-zip, pytorch-legacy, npy, npz, zip, 7z, zip-encrypted, invalid-pickle,
  png, skops).

Tools (--tools, comma list; default all of them)
  probity     --probity PATH or $PROBITY, default target/release/probity.
              One `probity scan --format json` over all files (falls back to one
              run per file if that fails); verdict = highest finding severity
              (info counts as clean); files[].error without a critical/warning
              finding = error.
  picklescan  `picklescan -p FILE` once per file. "Dangerous globals: N>0" ->
              critical, "Suspicious globals: N>0" -> warning, exit 2 without a
              dangerous global (scan error) -> error, else clean.
  fickling    `fickling --check-safety --json-output TMP FILE` once per file.
              Highest severity over the stacked-pickle JSON objects:
              OVERTLY_MALICIOUS / LIKELY_OVERTLY_MALICIOUS -> critical,
              LIKELY_UNSAFE / SUSPICIOUS / POSSIBLY_UNSAFE -> warning,
              LIKELY_SAFE -> clean; exit 2 (parse failure; the CLI only reads raw
              pickle streams, not zip/npy containers) -> error.
  modelscan   `modelscan scan -p FILE -r json -o TMP` once per file (run in an empty
              cwd so no modelscan-settings.toml is picked up). Issue severity
              CRITICAL/HIGH -> critical, MEDIUM/LOW -> warning; errors without
              issues -> error; exit 3 ("no supported files", e.g. unknown extension)
              -> clean, noted as "skipped" (counted in the skipped column).
  modelaudit  `modelaudit scan --format json --no-cache FILE...` in batches
              (one Python start-up costs ~2 s, so per-file runs are ~10x slower);
              issues are mapped back to files by their `location`
              ("<path>", "<path> (pos N)", "<path>:<member>") or details.files.
              Severity critical -> critical, warning -> warning, info -> clean;
              no critical/warning issue and file_metadata scan_outcome
              "inconclusive" (its exit 2 case) -> error. If a batch times out or
              its JSON cannot be read, its files are re-run one by one.
              Telemetry is disabled (PROMPTFOO_DISABLE_TELEMETRY=1, NO_ANALYTICS=1;
              otherwise it posts to a.promptfoo.app on every run).
  Peers are looked up in --venv (default $PEERS_VENV or /tmp/probity-peers)/bin
  (bin/modelscan is a symlink into its own venv; see setup.sh).
  Every subprocess gets --timeout seconds per file (default 30; batches get a
  proportional budget); a timeout is verdict "error" with detail "timeout".

Output
  A markdown table per tool (positives = expect critical|warning):
    TP@sev   detected at or above the expected severity (critical >= warning)
    any      flagged at any severity (critical or warning)
    under    flagged, but below the expected severity
    missed   verdict clean on a positive
    FP       critical or warning verdict on an `expect: clean` file
    err      verdict error (all files)
    wall s   wall time of all that tool's runs
  plus, with --by-format, one row per (format, tool). --csv PATH writes one row
  per (file, tool). Exit status 0 unless the inputs could not be read.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_FORMATS = (
    "pickle,pytorch-zip,pytorch-legacy,npy,npz,zip,7z,zip-encrypted,"
    "invalid-pickle,png,skops"
)
ALL_TOOLS = ("probity", "picklescan", "fickling", "modelscan", "modelaudit", "aisbom")
SEV_RANK = {"clean": 0, "warning": 1, "critical": 2}

PEER_ENV = {
    # modelaudit: PostHog telemetry opt-out (see modelaudit/telemetry.py)
    "PROMPTFOO_DISABLE_TELEMETRY": "1",
    "NO_ANALYTICS": "1",
    # no hub look-ups from anything that imports huggingface_hub
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "NO_COLOR": "1",
    "PYTHONWARNINGS": "ignore",
}


@dataclass
class Item:
    corpus: str  # "public" or "fixtures"
    rel: str
    path: str  # absolute
    expect: str
    fmt: str
    malicious: object = None


@dataclass
class Result:
    verdict: str  # critical|warning|clean|error
    detail: str = ""
    seconds: float | None = None
    rc: int | None = None
    skipped: bool = False


@dataclass
class ToolRun:
    name: str
    version: str = ""
    results: dict = field(default_factory=dict)  # path -> Result
    wall: float = 0.0
    note: str = ""


# ---------------------------------------------------------------- subprocess


def run_cmd(argv, timeout, cwd=None, env=None):
    """Run argv in its own process group; kill the group on timeout.

    Returns (rc or None on timeout, stdout, stderr, seconds)."""
    t0 = time.monotonic()
    p = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = p.communicate()
        rc = None
    return rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), time.monotonic() - t0


def peer_env():
    env = dict(os.environ)
    env.update(PEER_ENV)
    return env


def short(s, n=120):
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1] + "…"


# ---------------------------------------------------------------- tools


class Tool:
    name = "?"
    batch = False

    def __init__(self, args):
        self.args = args
        self.timeout = args.timeout
        self.work = tempfile.mkdtemp(prefix=f"cmp-{self.name}-")

    def available(self) -> str | None:
        """None if usable, else a reason."""
        raise NotImplementedError

    def version(self) -> str:
        return ""

    def scan_one(self, path: str) -> Result:
        raise NotImplementedError

    def scan_many(self, paths: list[str]) -> dict:
        raise NotImplementedError

    def cleanup(self):
        shutil.rmtree(self.work, ignore_errors=True)


def pkg_version(exe, dist):
    """Version of `dist` in the venv that owns console script `exe` (follows symlinks:
    $PEERS_VENV/bin/modelscan points into modelscan's own venv)."""
    py = Path(os.path.realpath(exe)).parent / "python"
    if not py.exists():
        return ""
    rc, out, _, _ = run_cmd(
        [str(py), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"], 30
    )
    return out.strip() if rc == 0 else ""


class PeerTool(Tool):
    exe = ""

    def bin(self):
        return str(Path(self.args.venv) / "bin" / self.exe)

    def available(self):
        return None if os.access(self.bin(), os.X_OK) else f"{self.bin()} not found (run scripts/peers/setup.sh)"

    def version(self):
        return pkg_version(self.bin(), self.name)


class Picklescan(PeerTool):
    name = exe = "picklescan"

    def scan_one(self, path):
        rc, out, err, dt = run_cmd([self.bin(), "-p", path], self.timeout, cwd=self.work, env=peer_env())
        if rc is None:
            return Result("error", "timeout", dt, rc)
        text = out + "\n" + err
        m_d = re.search(r"Dangerous globals:\s*(\d+)", text)
        m_s = re.search(r"Suspicious globals:\s*(\d+)", text)
        found = re.findall(r": dangerous import '([^']*)' FOUND", text)
        if m_d is None:
            last = [l for l in text.splitlines() if l.strip()]
            return Result("error", short(last[-1] if last else f"rc={rc}, no summary"), dt, rc)
        nd, ns = int(m_d.group(1)), int(m_s.group(1)) if m_s else 0
        if nd > 0:
            return Result("critical", short("dangerous: " + ", ".join(dict.fromkeys(found)) if found else f"{nd} dangerous globals"), dt, rc)
        if rc == 2:
            return Result("error", short(_first_error_line(text) or "scan error"), dt, rc)
        if ns > 0:
            return Result("warning", f"{ns} suspicious globals", dt, rc)
        return Result("clean", "", dt, rc)


def _first_error_line(text):
    for l in text.splitlines():
        if "ERROR" in l or "Error" in l or "error" in l:
            return l
    return ""


FICKLING_SEV = {
    "LIKELY_SAFE": "clean",
    "POSSIBLY_UNSAFE": "warning",
    "SUSPICIOUS": "warning",
    "LIKELY_UNSAFE": "warning",
    "LIKELY_OVERTLY_MALICIOUS": "critical",
    "OVERTLY_MALICIOUS": "critical",
}
FICKLING_ORDER = list(FICKLING_SEV)


def _json_stream(text):
    """Parse concatenated JSON objects (fickling appends one per stacked pickle)."""
    dec = json.JSONDecoder()
    i, objs = 0, []
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return objs
        obj, i = dec.raw_decode(text, i)
        objs.append(obj)


class Fickling(PeerTool):
    name = exe = "fickling"

    def scan_one(self, path):
        fd, jpath = tempfile.mkstemp(suffix=".json", dir=self.work)
        os.close(fd)
        os.unlink(jpath)
        try:
            rc, out, err, dt = run_cmd(
                [self.bin(), "--check-safety", "--json-output", jpath, path],
                self.timeout, cwd=self.work, env=peer_env(),
            )
            if rc is None:
                return Result("error", "timeout", dt, rc)
            objs = []
            if os.path.exists(jpath):
                try:
                    objs = _json_stream(Path(jpath).read_text())
                except ValueError as e:
                    return Result("error", f"bad JSON: {e}", dt, rc)
        finally:
            if os.path.exists(jpath):
                os.unlink(jpath)
        if rc not in (0, 1) or (rc == 1 and not objs):
            line = next((l for l in (err + out).splitlines() if l.strip()), f"rc={rc}")
            return Result("error", short(line), dt, rc)
        sevs = [o.get("severity", "LIKELY_SAFE") for o in objs]
        top = max(sevs, key=lambda s: FICKLING_ORDER.index(s) if s in FICKLING_ORDER else 0, default="LIKELY_SAFE")
        verdict = FICKLING_SEV.get(top, "warning")
        detail = top
        if verdict != "clean":
            o = next(o for o in objs if o.get("severity") == top)
            first = (o.get("analysis") or "").splitlines()[:1]
            detail = short(f"{top}: {first[0] if first else ''}")
        return Result(verdict, detail, dt, rc)


MODELSCAN_SEV = {"CRITICAL": "critical", "HIGH": "critical", "MEDIUM": "warning", "LOW": "warning"}


class Modelscan(PeerTool):
    name = exe = "modelscan"

    def scan_one(self, path):
        jpath = os.path.join(self.work, "report.json")
        if os.path.exists(jpath):
            os.unlink(jpath)
        rc, out, err, dt = run_cmd(
            [self.bin(), "scan", "-p", path, "-r", "json", "-o", jpath],
            self.timeout, cwd=self.work, env=peer_env(),
        )
        if rc is None:
            return Result("error", "timeout", dt, rc)
        rep = None
        if os.path.exists(jpath):
            try:
                rep = json.loads(Path(jpath).read_text())
            except ValueError:
                rep = None
        if rep is None:
            line = next((l for l in (out + err).splitlines() if "Exception" in l or "Error" in l), f"rc={rc}, no report")
            return Result("error", short(line), dt, rc)
        issues = rep.get("issues") or []
        errors = rep.get("errors") or []
        best = "clean"
        for i in issues:
            v = MODELSCAN_SEV.get(str(i.get("severity", "")).upper(), "warning")
            if SEV_RANK[v] > SEV_RANK[best]:
                best = v
        if best != "clean":
            ops = ", ".join(dict.fromkeys(f"{i.get('module')}.{i.get('operator')}" for i in issues))
            return Result(best, short(ops), dt, rc)
        if errors:
            e = errors[0]
            return Result("error", short(e.get("description") or e.get("category") or e), dt, rc)
        if rc == 3:
            return Result("clean", "skipped: no supported file", dt, rc, skipped=True)
        if rc not in (0, 1):
            return Result("error", f"rc={rc}", dt, rc)
        return Result("clean", "", dt, rc)


class Modelaudit(PeerTool):
    name = exe = "modelaudit"
    batch = True

    def _argv(self, paths):
        return [self.bin(), "scan", "--format", "json", "--no-cache", *paths]

    def scan_one(self, path):
        return self.scan_many([path], per_file=True)[path]

    def scan_many(self, paths, per_file=False):
        n = len(paths)
        budget = self.timeout if n == 1 else min(self.timeout * n, 60 + 3 * n)
        rc, out, err, dt = run_cmd(self._argv(paths), budget, cwd=self.work, env=peer_env())
        share = dt / n
        if rc is None:
            if n == 1:
                return {paths[0]: Result("error", "timeout", dt, rc)}
            return self._fallback(paths, f"batch of {n} timed out after {dt:.0f}s")
        try:
            rep = json.loads(out[out.index("{"):]) if "{" in out else None
        except ValueError:
            rep = None
        if not isinstance(rep, dict) or "issues" not in rep:
            if n == 1:
                line = next((l for l in (err + out).splitlines()[::-1] if l.strip()), f"rc={rc}")
                return {paths[0]: Result("error", short(line), dt, rc)}
            return self._fallback(paths, f"batch rc={rc} without JSON")
        return self._map(rep, paths, share, rc if n == 1 else None)

    def _fallback(self, paths, why):
        print(f"  modelaudit: {why}; re-running {len(paths)} files one by one", file=sys.stderr)
        res = {}
        for p in paths:
            res[p] = self.scan_many([p])[p]
        return res

    def _map(self, rep, paths, share, rc):
        # realpath of what modelaudit reports -> our path
        ours = {}
        for p in paths:
            ours[p] = p
            ours[os.path.realpath(p)] = p
        keys = sorted(ours, key=len, reverse=True)
        sevs = {p: [] for p in paths}
        msgs = {p: [] for p in paths}

        def owner(loc):
            for k in keys:
                if loc == k or loc.startswith(k + " ") or loc.startswith(k + ":"):
                    return ours[k]
            return None

        for i in rep.get("issues") or []:
            loc = i.get("location") or ""
            targets = []
            o = owner(loc)
            if o:
                targets = [o]
            else:
                d = i.get("details") or {}
                for f in d.get("files") or []:
                    o = owner(str(f))
                    if o:
                        targets.append(o)
            for t in targets:
                sevs[t].append(str(i.get("severity", "")).lower())
                msgs[t].append((i.get("severity"), i.get("message", "")))
        meta = rep.get("file_metadata") or {}
        meta_by = {}
        for k, v in meta.items():
            o = owner(k)
            if o:
                meta_by[o] = v
        seen = set()
        for a in rep.get("assets") or []:
            o = owner(str(a.get("path", "")))
            if o:
                seen.add(o)
        res = {}
        for p in paths:
            s = sevs[p]
            best = "critical" if "critical" in s else "warning" if "warning" in s else "clean"
            m = meta_by.get(p, {})
            if best != "clean":
                top = [msg for sv, msg in msgs[p] if str(sv).lower() == best]
                res[p] = Result(best, short(top[0] if top else ""), share, rc)
            elif m.get("scan_outcome") == "inconclusive":
                why = ",".join(m.get("scan_outcome_reasons") or [])
                info = [msg for _, msg in msgs[p]]
                res[p] = Result("error", short(f"inconclusive ({why}) {info[0] if info else ''}"), share, rc)
            elif p not in seen and p not in meta_by:
                res[p] = Result("error", "not in modelaudit report", share, rc)
            else:
                res[p] = Result("clean", "", share, rc)
        return res


class Aisbom(PeerTool):
    """aisbom-cli: `aisbom scan DIR --format json --output OUT --no-fail-on-risk`
    on a folder holding only the file (its report names components by base
    name). Risk CRITICAL -> critical, HIGH/MEDIUM -> warning, LOW/UNKNOWN ->
    clean; no component for the file -> clean, noted "not listed". Offline,
    telemetry off (AISBOM_OFFLINE=1, AISBOM_NO_TELEMETRY=1)."""

    name = exe = "aisbom"

    def version(self):
        return pkg_version(self.bin(), "aisbom-cli")

    def scan_one(self, path):
        d = tempfile.mkdtemp(dir=self.work)
        shutil.copy(path, d)
        out = os.path.join(self.work, "out.json")
        if os.path.exists(out):
            os.remove(out)
        env = dict(peer_env(), AISBOM_OFFLINE="1", AISBOM_NO_TELEMETRY="1", AISBOM_NO_OSV="1")
        rc, so, se, dt = run_cmd(
            [self.bin(), "scan", d, "--format", "json", "--output", out, "--no-fail-on-risk"],
            self.timeout,
            cwd=self.work,
            env=env,
        )
        shutil.rmtree(d, ignore_errors=True)
        if rc is None:
            return Result("error", "timeout", dt, rc)
        try:
            with open(out) as f:
                rep = json.load(f)
        except (OSError, ValueError):
            last = [l for l in (so + se).splitlines() if l.strip()]
            return Result("error", short(last[-1] if last else f"rc={rc}, no report"), dt, rc)
        base = os.path.basename(path)
        risks = []
        for c in rep.get("components", []):
            if c.get("name") != base:
                continue
            for prop in c.get("properties", []):
                if prop.get("name") == "aisbom:risk":
                    risks.append(str(prop.get("value", "")))
        if not risks:
            return Result("clean", "not listed", dt, rc)
        level = lambda r: r.split(" ")[0].upper()
        if any(level(r) == "CRITICAL" for r in risks):
            return Result("critical", short("; ".join(risks)), dt, rc)
        if any(level(r) in ("HIGH", "MEDIUM") for r in risks):
            return Result("warning", short("; ".join(risks)), dt, rc)
        return Result("clean", short("; ".join(risks)), dt, rc)


class Probity(Tool):
    name = "probity"
    batch = True

    def bin(self):
        return self.args.probity

    def available(self):
        return None if os.access(self.bin(), os.X_OK) else f"{self.bin()} not found (cargo build --release)"

    def version(self):
        rc, out, _, _ = run_cmd([self.bin(), "--version"], 10)
        return out.strip().split()[-1] if rc == 0 and out.strip() else ""

    def _argv(self, paths):
        argv = [self.bin(), "scan", "--format", "json"]
        if self.args.probity_jobs:
            argv += ["--jobs", str(self.args.probity_jobs)]
        return argv + list(paths)

    def scan_one(self, path):
        return self.scan_many([path])[path]

    def scan_many(self, paths):
        n = len(paths)
        budget = self.timeout if n == 1 else min(self.timeout * n, 60 + n)
        rc, out, err, dt = run_cmd(self._argv(paths), budget, cwd=self.work)
        if rc is None:
            if n == 1:
                return {paths[0]: Result("error", "timeout", dt, rc)}
            return self._fallback(paths, "batch timed out")
        try:
            rep = json.loads(out)
        except ValueError:
            rep = None
        if not isinstance(rep, dict) or not isinstance(rep.get("files"), list):
            if n == 1:
                line = next((l for l in (err + out).splitlines()[::-1] if l.strip()), f"rc={rc}")
                return {paths[0]: Result("error", short(line), dt, rc)}
            return self._fallback(paths, f"batch rc={rc} without JSON")
        return self._map(rep, paths, dt / n, rc if n == 1 else None)

    def _fallback(self, paths, why):
        print(f"  probity: {why}; re-running {len(paths)} files one by one", file=sys.stderr)
        return {p: self.scan_many([p])[p] for p in paths}

    def _map(self, rep, paths, share, rc):
        ours = {}
        for p in paths:
            ours[p] = p
            ours[os.path.realpath(p)] = p
        keys = sorted(ours, key=len, reverse=True)

        def owner(fp):
            if fp in ours:
                return ours[fp]
            rp = os.path.realpath(fp) if os.path.isabs(fp) else os.path.realpath(os.path.join(self.work, fp))
            if rp in ours:
                return ours[rp]
            for k in keys:  # archive members reported as "<path>!member", "<path>:member", "<path>/member"
                if fp.startswith(k) and fp[len(k):len(k) + 1] in ("!", ":", "/", "#", " "):
                    return ours[k]
            return None

        acc = {p: {"sev": "clean", "rules": [], "errors": [], "seen": False} for p in paths}
        for f in rep["files"]:
            o = owner(str(f.get("path", "")))
            if o is None:
                continue
            a = acc[o]
            a["seen"] = True
            for fd in f.get("findings") or []:
                sv = str(fd.get("severity", "")).lower()
                if sv in SEV_RANK and SEV_RANK[sv] > SEV_RANK[a["sev"]]:
                    a["sev"] = sv
                if sv in ("critical", "warning"):
                    a["rules"].append(f"{fd.get('rule')}:{sv[0]}")
            if f.get("error"):
                a["errors"].append(str(f["error"]))
        res = {}
        for p in paths:
            a = acc[p]
            if a["sev"] != "clean":
                res[p] = Result(a["sev"], short(",".join(dict.fromkeys(a["rules"]))), share, rc)
            elif a["errors"]:
                res[p] = Result("error", short(a["errors"][0]), share, rc)
            elif not a["seen"]:
                res[p] = Result("error", "not in probity report", share, rc)
            else:
                res[p] = Result("clean", "", share, rc)
        return res


TOOLS = {"probity": Probity, "picklescan": Picklescan, "fickling": Fickling,
         "modelscan": Modelscan, "modelaudit": Modelaudit, "aisbom": Aisbom}


# ---------------------------------------------------------------- corpus


def load_items(args):
    formats = None if args.formats == "all" else {f.strip() for f in args.formats.split(",") if f.strip()}
    items = []
    sources = [("public", Path(args.corpus), Path(args.corpus) / "labels.json")]
    if not args.no_fixtures:
        man = Path(args.fixtures)
        if man.exists():
            sources.append(("fixtures", man.parent, man))
        elif args.fixtures_given:
            sys.exit(f"compare.py: {man} not found")
    for name, root, labels in sources:
        try:
            data = json.loads(labels.read_text())
        except (OSError, ValueError) as e:
            sys.exit(f"compare.py: cannot read {labels}: {e}")
        if isinstance(data, dict) and "files" in data and isinstance(data["files"], (dict, list)):
            data = data["files"]
        if isinstance(data, list):  # tolerate [{"path":..., ...}]
            data = {d["path"]: d for d in data}
        for rel, lab in sorted(data.items()):
            fmt = str(lab.get("format", "?"))
            if formats is not None and fmt not in formats:
                continue
            p = (root / rel).resolve()
            if not p.exists():
                print(f"compare.py: missing {name}/{rel}, skipped", file=sys.stderr)
                continue
            items.append(Item(name, rel, str(p), str(lab.get("expect", "?")), fmt, lab.get("malicious")))
    return items


# ---------------------------------------------------------------- run + report


def run_tool(tool, items, jobs, batch):
    paths = list(dict.fromkeys(it.path for it in items))
    run = ToolRun(tool.name, tool.version())
    t0 = time.monotonic()
    if tool.batch and batch:
        chunk = max(1, tool.args.batch_size)
        for i in range(0, len(paths), chunk):
            run.results.update(tool.scan_many(paths[i:i + chunk]))
    else:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
            for p, r in zip(paths, ex.map(tool.scan_one, paths)):
                run.results[p] = r
    run.wall = time.monotonic() - t0
    return run


def stats(items, run):
    s = dict(files=0, pos=0, tp=0, any=0, under=0, missed=0, pos_err=0, neg=0, fp=0, fp_crit=0,
             neg_err=0, err=0, skipped=0, exact=0)
    for it in items:
        r = run.results.get(it.path)
        if r is None:
            continue
        s["files"] += 1
        s["err"] += r.verdict == "error"
        s["skipped"] += r.skipped
        s["exact"] += r.verdict == it.expect
        if it.expect in ("critical", "warning"):
            s["pos"] += 1
            if r.verdict == "error":
                s["pos_err"] += 1
            elif r.verdict == "clean":
                s["missed"] += 1
            else:
                s["any"] += 1
                if SEV_RANK[r.verdict] >= SEV_RANK[it.expect]:
                    s["tp"] += 1
                else:
                    s["under"] += 1
        elif it.expect == "clean":
            s["neg"] += 1
            if r.verdict in ("critical", "warning"):
                s["fp"] += 1
                s["fp_crit"] += r.verdict == "critical"
            elif r.verdict == "error":
                s["neg_err"] += 1
    return s


def pct(a, b):
    return f"{100.0 * a / b:.0f}%" if b else "-"


def print_tables(items, runs, skipped_tools, by_format, title):
    print(f"### {title}\n")
    print(f"{len(items)} files: " + ", ".join(
        f"{k} {sum(1 for i in items if i.expect == k)}" for k in ("critical", "warning", "clean")
        if any(i.expect == k for i in items)) + "\n")
    hdr = ("| tool | version | files | TP@sev | TP rate | any sev | under | missed | err on pos "
           "| FP (crit) on clean | err on clean | err total | skipped | exact | wall s |")
    print(hdr)
    print("|" + "|".join(["---"] * (hdr.count("|") - 1)) + "|")
    for run in runs:
        s = stats(items, run)
        print(f"| {run.name} | {run.version} | {s['files']} | {s['tp']}/{s['pos']} | {pct(s['tp'], s['pos'])} "
              f"| {s['any']} | {s['under']} | {s['missed']} | {s['pos_err']} | {s['fp']} ({s['fp_crit']}) / {s['neg']} "
              f"| {s['neg_err']} | {s['err']} | {s['skipped']} | {pct(s['exact'], s['files'])} | {run.wall:.2f} |")
    for name, why in skipped_tools:
        print(f"| {name} | – | not run: {why} |" + " |" * 12)
    print()
    if by_format and runs:
        fmts = sorted({i.fmt for i in items})
        print("| format | n (pos/clean) | " + " | ".join(r.name for r in runs) + " |")
        print("|---|---|" + "---|" * len(runs))
        for f in fmts:
            sub = [i for i in items if i.fmt == f]
            npos = sum(i.expect in ("critical", "warning") for i in sub)
            nneg = sum(i.expect == "clean" for i in sub)
            cells = []
            for r in runs:
                s = stats(sub, r)
                c = f"{s['tp']}/{s['pos']}" if s["pos"] else ""
                if s["neg"]:
                    c += ("; " if c else "") + f"FP {s['fp']}/{s['neg']}"
                if s["err"]:
                    c += f"; err {s['err']}"
                cells.append(c)
            print(f"| {f} | {npos}/{nneg} | " + " | ".join(cells) + " |")
        print("\n(cells: TP@sev/positives; FP/clean files; errors)\n")


def write_csv(path, items, runs):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["corpus", "path", "format", "expect", "malicious", "tool", "version", "verdict",
                    "outcome", "seconds", "rc", "detail"])
        for it in items:
            for run in runs:
                r = run.results.get(it.path)
                if r is None:
                    continue
                w.writerow([it.corpus, it.rel, it.fmt, it.expect,
                            "" if it.malicious is None else str(it.malicious).lower(), run.name, run.version,
                            r.verdict, outcome(it.expect, r.verdict),
                            "" if r.seconds is None else f"{r.seconds:.3f}",
                            "" if r.rc is None else r.rc, r.detail])


def outcome(expect, verdict):
    if verdict == "error":
        return "error"
    if expect in ("critical", "warning"):
        if verdict == "clean":
            return "missed"
        return "tp" if SEV_RANK[verdict] >= SEV_RANK[expect] else "under"
    if expect == "clean":
        return "fp" if verdict != "clean" else "tn"
    return "n/a"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring (top of this file) for the verdict mappings.")
    ap.add_argument("--corpus", default=str(REPO / "tests" / "data" / "corpus"))
    ap.add_argument("--fixtures", default=None, help="manifest.json (default: fixtures/manifest.json of the repo, if present)")
    ap.add_argument("--no-fixtures", action="store_true")
    ap.add_argument("--formats", default=DEFAULT_FORMATS, help='comma list or "all"')
    ap.add_argument("--tools", default=",".join(ALL_TOOLS), help="comma list from: " + ",".join(ALL_TOOLS))
    ap.add_argument("--probity", default=os.environ.get("PROBITY", str(REPO / "target" / "release" / "probity")))
    ap.add_argument("--probity-jobs", type=int, default=0, help="pass --jobs N to probity (default: its own)")
    ap.add_argument("--venv", default=os.environ.get("PEERS_VENV", "/tmp/probity-peers"))
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per file (default 30)")
    ap.add_argument("--jobs", type=int, default=1, help="parallel per-file runs for per-file tools (default 1)")
    ap.add_argument("--no-batch", action="store_true", help="run probity/modelaudit once per file too")
    ap.add_argument("--batch-size", type=int, default=200, help="files per batched run (default 200)")
    ap.add_argument("--csv", help="write per-file verdicts here")
    ap.add_argument("--by-format", action="store_true", help="also print a per-format table")
    ap.add_argument("--limit", type=int, default=0, help="only the first N files (for quick tests)")
    args = ap.parse_args()
    args.fixtures_given = args.fixtures is not None
    if args.fixtures is None:
        args.fixtures = str(REPO / "fixtures" / "manifest.json")

    items = load_items(args)
    if args.limit:
        items = items[: args.limit]
    if not items:
        sys.exit("compare.py: no files selected")

    wanted = [t.strip() for t in args.tools.split(",") if t.strip()]
    for t in wanted:
        if t not in TOOLS:
            sys.exit(f"compare.py: unknown tool {t} (known: {', '.join(ALL_TOOLS)})")

    runs, skipped = [], []
    for name in wanted:
        tool = TOOLS[name](args)
        why = tool.available()
        if why:
            print(f"compare.py: skipping {name}: {why}", file=sys.stderr)
            skipped.append((name, why))
            tool.cleanup()
            continue
        print(f"compare.py: running {name} on {len(items)} files ...", file=sys.stderr)
        try:
            runs.append(run_tool(tool, items, args.jobs, not args.no_batch))
        finally:
            tool.cleanup()
        print(f"compare.py: {name} done in {runs[-1].wall:.1f}s", file=sys.stderr)

    pub = [i for i in items if i.corpus == "public"]
    fix = [i for i in items if i.corpus == "fixtures"]
    fmt_note = "all formats" if args.formats == "all" else f"formats: {args.formats}"
    if pub:
        print_tables(pub, runs, skipped, args.by_format, f"Public corpus ({fmt_note})")
    if fix:
        print_tables(fix, runs, skipped, args.by_format, f"Probity fixtures ({fmt_note})")
    print("Wall time is the tool's whole pass over all selected files (both corpora together).\n")
    if args.csv:
        write_csv(args.csv, items, runs)
        print(f"compare.py: per-file verdicts written to {args.csv}", file=sys.stderr)


if __name__ == "__main__":
    main()
