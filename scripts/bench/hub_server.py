#!/usr/bin/env python3
"""A loopback server that speaks the Hugging Face Hub's listing and file
endpoints over folders on disk, for benchmarks of remote scans.

    hub_server.py ROOT PORT_FILE [--no-range]

ROOT/ORG/NAME/ is the repository ORG/NAME (every revision is the same
commit). The chosen port is written to PORT_FILE. Files are sent with
sendfile(2); `Range: bytes=A-B` is honoured (206) unless --no-range.
GET /_stats answers {"bytes": N, "requests": K} (bytes of file bodies sent
since the last GET /_stats?reset=1).
"""

import json
import os
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "fedcba9876543210fedcba9876543210fedcba98"
ROOT = os.path.abspath(sys.argv[1])
RANGES = "--no-range" not in sys.argv
LOCK = threading.Lock()
STATS = {"bytes": 0, "requests": 0}


def repo_dir(org, name):
    d = os.path.join(ROOT, org, name)
    return d if os.path.isdir(d) and os.path.commonpath([ROOT, d]) == ROOT else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body, ctype="application/json"):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_HEAD(self):
        self.do_GET(head=True)

    def do_GET(self, head=False):
        url = urllib.parse.urlparse(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
        if parts == ["_stats"]:
            with LOCK:
                body = json.dumps(STATS)
                if "reset=1" in url.query:
                    STATS.update(bytes=0, requests=0)
            return self.reply(200, body)
        if len(parts) >= 5 and parts[:2] == ["api", "models"] and parts[4] == "revision":
            d = repo_dir(parts[2], parts[3])
            if d is None:
                return self.reply(404, '{"error": "Repository not found"}')
            siblings = []
            for base, _, files in os.walk(d):
                for f in files:
                    p = os.path.join(base, f)
                    siblings.append(
                        {"rfilename": os.path.relpath(p, d).replace(os.sep, "/"), "size": os.path.getsize(p)}
                    )
            siblings.sort(key=lambda s: s["rfilename"])
            return self.reply(200, json.dumps({"id": f"{parts[2]}/{parts[3]}", "sha": COMMIT, "siblings": siblings}))
        if len(parts) >= 5 and parts[2] == "resolve":
            d = repo_dir(parts[0], parts[1])
            rel = "/".join(parts[4:])
            p = os.path.realpath(os.path.join(d or "/nonexistent", rel))
            if d is None or os.path.commonpath([d, p]) != d or not os.path.isfile(p):
                return self.reply(404, "Entry not found", "text/plain")
            full = os.path.getsize(p)
            start, end = 0, full - 1
            rng = self.headers.get("Range") if RANGES else None
            if rng and rng.startswith("bytes="):
                a, _, b = rng[6:].partition("-")
                start = int(a)
                end = min(int(b), full - 1) if b else full - 1
            length = max(0, end + 1 - start)
            self.send_response(206 if rng else 200)
            self.send_header("Content-Length", str(length))
            self.send_header("ETag", '"%040x"' % (hash(rel) & (2**160 - 1)))
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Accept-Ranges", "bytes" if RANGES else "none")
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{end}/{full}")
            self.end_headers()
            if head:
                return
            with LOCK:
                STATS["requests"] += 1
            with open(p, "rb") as f:
                off, left = start, length
                while left > 0:
                    n = os.sendfile(self.connection.fileno(), f.fileno(), off, min(left, 64 << 20))
                    if n == 0:
                        break
                    off += n
                    left -= n
                    with LOCK:
                        STATS["bytes"] += n
            return
        return self.reply(404, "unknown endpoint", "text/plain")


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    with open(sys.argv[2], "w") as f:
        f.write(str(srv.server_address[1]))
    srv.serve_forever()


if __name__ == "__main__":
    main()
