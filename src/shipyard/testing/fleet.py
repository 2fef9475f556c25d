"""A fleet workspace for tests and benchmarks: a git repo holding a small stdlib-only HTTP API (so it runs
on a host's own Python, with nothing installed there), its bare origin, and a shipyard.yaml deploying it to
the given hosts with an ssh target.

The app answers `/health` (500 while a FAIL_HEALTH file is in its release), `/version` (JSON: version,
revision, host, port) and `/slow?ms=N`; it listens on BIND_HOST:PORT and, on SIGTERM, stops accepting and
finishes the requests it has before exiting, like a well-behaved backend.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

APP = r'''
import json, os, signal, socket, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = open(os.path.join(HERE, "VERSION")).read().strip()
PORT = int(os.environ["PORT"])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/health":
            failing = os.path.exists(os.path.join(HERE, "FAIL_HEALTH"))
            return self._send(500 if failing else 200, {"ok": not failing})
        if url.path == "/slow":
            time.sleep(int(parse_qs(url.query).get("ms", ["100"])[0]) / 1000)
        self._send(200, {"version": VERSION, "revision": os.environ.get("SHIPYARD_REVISION", ""),
                         "host": socket.gethostname(), "port": PORT})

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = False          # server_close() waits for the requests in flight
    allow_reuse_address = True


server = Server((os.environ.get("BIND_HOST", "127.0.0.1"), PORT), Handler)


def stop(*_):
    threading.Thread(target=server.shutdown, daemon=True).start()


signal.signal(signal.SIGTERM, stop)
print(f"fleet app {VERSION} on {server.server_address}", flush=True)
server.serve_forever(poll_interval=0.1)
server.server_close()
'''


class HostLike(Protocol):
    name: str
    address: str
    user: str
    known_hosts_line: str


@dataclass
class FleetWorkspace:
    root: Path
    config_path: Path
    repo: Path          # a working clone; commits are pushed to `origin`
    origin: Path


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def create_fleet_workspace(root: Path, hosts: Sequence[HostLike], client_key: Path, *, router: str,
                           strategy: str, per_host: int = 1, port: int = 8080, mode: str = "surge",
                           python: str = "/usr/bin/python3", extra: str = "", service: str = "api",
                           other_hosts: Sequence[HostLike] = ()) -> FleetWorkspace:
    """root/shipyard.yaml deploying `service` from a fresh repo (v1 on branch main) to `hosts`.

    `router` and `strategy` are YAML flow mappings for deploy.router and deploy.strategy; `other_hosts` are
    under `hosts:` (and trusted) but in no target (a build host, a router's host); `extra` is appended as
    is (lines indented by 4 continue the service)."""
    root.mkdir(parents=True, exist_ok=True)
    origin, repo = root / "origin.git", root / "repo"
    _git(root, "init", "-q", "--bare", "-b", "main", str(origin))
    _git(root, "init", "-q", "-b", "main", str(repo))
    _git(repo, "config", "user.email", "fleet@example.invalid")
    _git(repo, "config", "user.name", "fleet")
    (repo / "app.py").write_text(APP.lstrip(), encoding="utf-8")
    (repo / "VERSION").write_text("1.0.0\n", encoding="utf-8")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "v1")
    _git(repo, "remote", "add", "origin", str(origin))
    _git(repo, "push", "-q", "origin", "main")
    known = [*hosts, *other_hosts]
    (root / "known_hosts").write_text("".join(f"{h.known_hosts_line}\n" for h in known), encoding="utf-8")
    host_lines = "\n".join(f"  {h.name}: {{address: {h.address}, user: {h.user}}}" for h in known)
    config = f"""project: fleet
state: sqlite:///.shipyard/state.db
repos:
  {service}: {{url: {json.dumps(str(origin))}}}
environments:
  prod: {{branch: main}}
hosts:
{host_lines}
ssh: {{key_file: {json.dumps(str(client_key))}, known_hosts: known_hosts, connect_timeout: 3s}}
services:
  {service}:
    repo: {service}
    run: {json.dumps(shlex.join([python, "app.py"]))}
    env: {{BIND_HOST: 0.0.0.0}}
    health: {{type: http, path: /health, interval: 0.2s, timeout: 1s, healthy_threshold: 2,
             unhealthy_threshold: 2, start_period: 5s}}
    deploy:
      target: {{type: ssh, hosts: [{", ".join(h.name for h in hosts)}], per_host: {per_host}, port: {port},
               mode: {mode}, stop_timeout: 5s}}
      router: {router}
      strategy: {strategy}
      keep_previous: 5m
{extra}"""
    config_path = root / "shipyard.yaml"
    config_path.write_text(config, encoding="utf-8")
    return FleetWorkspace(root, config_path, repo, origin)


def commit_version(ws: FleetWorkspace, version: str, *, fail_health: bool = False) -> str:
    """Commit VERSION (and FAIL_HEALTH when asked) on main, push it; returns the sha."""
    (ws.repo / "VERSION").write_text(f"{version}\n", encoding="utf-8")
    marker = ws.repo / "FAIL_HEALTH"
    if fail_health:
        marker.write_text("this revision fails its health check on purpose\n", encoding="utf-8")
    elif marker.exists():
        marker.unlink()
    _git(ws.repo, "add", "-A")
    _git(ws.repo, "commit", "-q", "-m", f"v{version}")
    _git(ws.repo, "push", "-q", "origin", "main")
    return _git(ws.repo, "rev-parse", "HEAD")
