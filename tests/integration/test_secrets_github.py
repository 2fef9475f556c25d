"""`shipyard secrets sync github` against a local GitHub API stand-in that decrypts with its own key pair.

The stand-in serves the repository public key and records every PUT; it opens each sealed box with the
private half, so the test checks the values GitHub would really store (and that nothing else arrives).
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from nacl.public import PrivateKey, SealedBox

try:
    from .test_secrets_support import cli_env, new_master_key, run_cli
except ImportError:
    from test_secrets_support import cli_env, new_master_key, run_cli  # type: ignore[no-redef]

TOKEN = "ghp_test_token_0123456789"
CONFIG = """\
project: gli
repos: {api: {path: .}}
environments:
  stg: {branch: stg}
  prod: {branch: main}
services:
  api:
    repo: api
    run: python app.py
    env: {DATABASE_URL: "pg://app:${secret:DB_PASSWORD}@db/app", LOG_LEVEL: info}
    requires_env: [JWT_SECRET]
"""


class FakeGitHub:
    def __init__(self) -> None:
        self.private = PrivateKey.generate()
        self.key_id = "568250167242549743"
        self.secrets: dict[str, dict[str, str]] = {}     # scope -> name -> decrypted value
        self.requests: list[tuple[str, str]] = []
        github = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any] | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _scope(self) -> str | None:
                github.requests.append((self.command, self.path))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._send(401, {"message": "Bad credentials"})
                    return None
                parts = self.path.split("/")
                if parts[1:4] != ["repos", "org", "gli_api-server"]:
                    self._send(404, {"message": "Not Found"})
                    return None
                return "repo" if parts[4] == "actions" else f"env:{parts[5]}"

            def do_GET(self) -> None:
                if self._scope() is not None and self.path.endswith("/secrets/public-key"):
                    self._send(200, {"key_id": github.key_id,
                                     "key": base64.b64encode(bytes(github.private.public_key)).decode()})

            def do_PUT(self) -> None:
                scope = self._scope()
                if scope is None:
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if body.get("key_id") != github.key_id:
                    self._send(422, {"message": "wrong key_id"})
                    return
                value = SealedBox(github.private).decrypt(base64.b64decode(body["encrypted_value"])).decode()
                name = self.path.rsplit("/", 1)[1]
                store = github.secrets.setdefault(scope, {})
                status = 204 if name in store else 201
                store[name] = value
                self._send(status)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()
    yield fake
    fake.close()


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "gli"
    root.mkdir()
    (root / "shipyard.yaml").write_text(CONFIG)
    env = cli_env(SHIPYARD_MASTER_KEY=new_master_key(), GITHUB_TOKEN=TOKEN)
    for name, value in (("DB_PASSWORD", "db-pw-prod-4242"), ("JWT_SECRET", "jwt-prod-secret-77"),
                        ("UNUSED", "not-needed-by-any-service")):
        res = run_cli(root, "secrets", "set", name, "--env", "prod", env=env, stdin=value + "\n")
        assert res.returncode == 0, str(res)
    return root, env


def test_sync_writes_the_values_the_services_need(github: FakeGitHub, project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    res = run_cli(root, "secrets", "sync", "github", "--repo", "org/gli_api-server", "--env", "prod",
                  "--api-url", github.url, "--json", env=env)
    assert res.returncode == 0, str(res)
    assert github.secrets == {"repo": {"DB_PASSWORD": "db-pw-prod-4242", "JWT_SECRET": "jwt-prod-secret-77"}}
    assert json.loads(res.stdout) == {"repo": "org/gli_api-server", "env": "prod",
                                      "created": ["DB_PASSWORD", "JWT_SECRET"], "updated": []}
    again = run_cli(root, "secrets", "sync", "github", "--repo", "org/gli_api-server", "--env", "prod",
                    "--api-url", github.url, "--names", "JWT_SECRET", "--github-env", "production", env=env)
    assert again.returncode == 0, str(again)
    assert github.secrets["env:production"] == {"JWT_SECRET": "jwt-prod-secret-77"}
    for out in (res.stdout + res.stderr, again.stdout + again.stderr):
        assert "db-pw-prod-4242" not in out and "jwt-prod-secret-77" not in out and TOKEN not in out
    con = sqlite3.connect(root / ".shipyard" / "state.db")
    rows = con.execute("SELECT kind, data FROM events WHERE kind = 'secrets.synced'").fetchall()
    assert [json.loads(d)["names"] for _, d in rows] == [["DB_PASSWORD", "JWT_SECRET"], ["JWT_SECRET"]]


def test_sync_refuses_missing_values_and_bad_tokens(github: FakeGitHub, project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    res = run_cli(root, "secrets", "sync", "github", "--repo", "org/gli_api-server", "--env", "stg",
                  "--api-url", github.url, "--names", "JWT_SECRET,DB_PASSWORD", env=env)
    assert res.returncode == 2 and "stg: missing or empty: JWT_SECRET, DB_PASSWORD" in res.stderr, str(res)
    assert github.requests == []                                   # nothing was sent
    bad = run_cli(root, "secrets", "sync", "github", "--repo", "org/gli_api-server", "--env", "prod",
                  "--api-url", github.url, env={**env, "GITHUB_TOKEN": "wrong"})
    assert bad.returncode == 1 and "401 Bad credentials" in bad.stderr and "Traceback" not in bad.stderr, str(bad)
    none = run_cli(root, "secrets", "sync", "github", "--repo", "org/gli_api-server", "--env", "prod",
                   "--api-url", github.url, env={k: v for k, v in env.items() if k != "GITHUB_TOKEN"})
    assert none.returncode == 2 and "set GITHUB_TOKEN" in none.stderr
