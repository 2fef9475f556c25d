"""A loopback stand-in for the npm registry's audit endpoint, so the real `npm audit` runs offline.

`npm audit` posts the lockfile's {name: [versions]} to `<registry>/-/npm/v1/security/advisories/bulk` and
reads each vulnerable package's packument (`GET <registry>/<name>`) to work out which installed versions
are affected and whether a fix exists. This server answers both from the advisories a test gives it (the
shape is the registry's: id, url, title, severity, vulnerable_versions, cwe, cvss), so the report npm
prints is npm's own computation over them.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote


@contextmanager
def npm_registry(advisories: dict[str, list[dict[str, Any]]],
                 versions: dict[str, list[str]]) -> Iterator[str]:
    """Serve `advisories` (package -> advisories) and packuments listing `versions`; yields the URL."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if not self.path.startswith("/-/npm/v1/security/advisories/bulk"):
                self._send(404, {"error": "not found"})
                return
            if self.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            asked: dict[str, list[str]] = json.loads(body or b"{}")
            seen.append(asked)
            self._send(200, {name: advisories[name] for name in asked if name in advisories})

        def do_GET(self) -> None:
            name = unquote(self.path.lstrip("/").split("?")[0])
            if name not in versions:
                self._send(404, {"error": "not found"})
                return
            vs = versions[name]
            self._send(200, {"name": name, "dist-tags": {"latest": vs[-1]},
                             "versions": {v: {"name": name, "version": v, "dependencies": {},
                                              "dist": {"tarball": f"http://127.0.0.1/{name}-{v}.tgz"}}
                                          for v in vs}})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# Two advisories as GitHub publishes them (ids, ranges and scores of the real ones).
LODASH_PROTOTYPE_POLLUTION = {
    "id": 1523, "url": "https://github.com/advisories/GHSA-p6mc-m468-83gm",
    "title": "Prototype Pollution in lodash", "severity": "high", "vulnerable_versions": "<4.17.19",
    "cwe": ["CWE-770", "CWE-915"],
    "cvss": {"score": 7.4, "vectorString": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:H/A:H"}}
LODASH_COMMAND_INJECTION = {
    "id": 1673, "url": "https://github.com/advisories/GHSA-35jh-r3h4-6jhm",
    "title": "Command Injection in lodash", "severity": "high", "vulnerable_versions": "<4.17.21",
    "cwe": ["CWE-77", "CWE-94"], "cvss": {"score": 7.2, "vectorString": "CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H"}}
MINIMIST_PROTOTYPE_POLLUTION = {
    "id": 1179, "url": "https://github.com/advisories/GHSA-xvch-5gv4-984h",
    "title": "Prototype Pollution in minimist", "severity": "critical", "vulnerable_versions": "<1.2.6",
    "cwe": ["CWE-1321"], "cvss": {"score": 9.8, "vectorString": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}}
ADVISORIES = {"lodash": [LODASH_PROTOTYPE_POLLUTION, LODASH_COMMAND_INJECTION],
              "minimist": [MINIMIST_PROTOTYPE_POLLUTION]}
VERSIONS = {"lodash": ["4.17.15", "4.17.19", "4.17.20", "4.17.21"], "minimist": ["1.2.0", "1.2.5", "1.2.6", "1.2.8"]}
