"""Deploys do what the docs promise, through the real CLI against real processes: a frozen environment
refuses deploys until an override (recorded); an OS error is one line and leaves nothing in progress; a
static service with the default run command deploys and serves; `run` placeholders reach the process."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from shipyard.demo.workspace import git

from .conftest import E2E, assert_ok, assert_one_error, get_version, run_cli

UNFINISHED = ("queued", "in_progress", "rolling_back")


def _events(e2e: E2E, dep_id: str) -> list[dict[str, Any]]:
    return assert_ok(e2e.cli("show", dep_id, "--json")).json()["events"]


def _frozen(text: str) -> str:
    old = "  stg:  {branch: stg, promote_from: dev, "
    assert old in text
    return text.replace(old, "  stg:  {branch: stg, frozen: true, promote_from: dev, ", 1)


def test_a_frozen_environment_refuses_deploys_until_an_override(new_workspace: Callable[[], E2E]) -> None:
    e2e = new_workspace()
    e2e.edit_config(_frozen)
    line = assert_one_error(e2e.deploy("api"), 1)
    assert "environments.stg.frozen: true" in line and "--override-freeze" in line, line
    assert e2e.deployments() == [], "a refused deploy left a record"
    assert "--reason" in assert_one_error(e2e.deploy("api", "--override-freeze"), 2)
    assert "--override-freeze" in assert_one_error(e2e.deploy("api", "--reason", "why"), 2)

    res = assert_ok(e2e.deploy("api", "--override-freeze", "--reason", "outage fix, approved by lead", "--json"))
    dep_id = res.json()["id"]
    assert get_version(e2e.api_port)["version"] == "1.0.0"
    [over] = [ev for ev in _events(e2e, dep_id) if ev["kind"] == "deploy.freeze_overridden"]
    assert over["data"]["actor"] == "e2e" and over["data"]["reason"] == "outage fix, approved by lead"
    assert "frozen" in assert_one_error(e2e.deploy("api"), 1), "an override is for one request only"


def test_an_os_error_mid_deploy_is_one_line_and_fails_the_run(new_workspace: Callable[[], E2E]) -> None:
    e2e = new_workspace()
    (e2e.root / ".shipyard" / "releases").write_text("a file where the releases directory goes\n")
    res = e2e.deploy("api", "--json")
    line = assert_one_error(res, 1)
    assert "Not a directory" in line or "File exists" in line, line
    assert res.json()["state"] == "failed", str(res)
    assert [d["state"] for d in e2e.deployments()] == ["failed"]
    assert not [d for d in e2e.deployments() if d["state"] in UNFINISHED]
    shown = assert_ok(e2e.cli("show", res.json()["id"], "--json")).json()
    assert [s["state"] for s in shown["steps"] if s["phase"] == "deploy"] == ["failed"]
    assert json.dumps(shown).count("Traceback") == 0


def test_a_static_service_with_the_default_run_deploys_and_serves(new_workspace: Callable[[], E2E]) -> None:
    e2e = new_workspace()

    def static(text: str) -> str:
        lines = [line for line in text.splitlines(keepends=True) if "-m http.server {port}" not in line]
        out = "".join(lines).replace("    repo: web\n", "    repo: web\n    kind: static\n    publish_dir: dist\n", 1)
        assert "kind: static" in out and len(lines) < len(text.splitlines())
        return out

    e2e.edit_config(static)
    res = assert_ok(e2e.deploy("web", "--json"))
    assert res.json()["state"] == "succeeded", str(res)
    page = httpx.get(f"http://127.0.0.1:{e2e.ws.web_port}/version.txt", timeout=5)
    assert page.status_code == 200 and page.text.strip() == "1.0.0"
    assert "shipyard demo web 1.0.0" in httpx.get(f"http://127.0.0.1:{e2e.ws.web_port}/", timeout=5).text


ARGV_SERVER = """\
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

args = dict(zip(sys.argv[1::2], sys.argv[2::2]))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"args": args, "instance": os.environ.get("SHIPYARD_INSTANCE"),
                           "port": os.environ.get("PORT"), "cwd": os.getcwd()}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


HTTPServer(("127.0.0.1", int(args["--port"])), Handler).serve_forever()
"""


def test_run_placeholders_reach_the_process(new_workspace: Callable[[], E2E]) -> None:
    e2e = new_workspace()
    dev = e2e.ws.dev_clones["api"]
    git(dev, "fetch", "--quiet", "origin")
    git(dev, "checkout", "--quiet", "--force", "-B", "stg", "origin/stg")
    (dev / "argv_server.py").write_text(ARGV_SERVER, encoding="utf-8")
    git(dev, "add", "argv_server.py")
    git(dev, "commit", "--quiet", "-m", "argv server")
    git(dev, "push", "--quiet", "origin", "HEAD:refs/heads/stg")
    run = f"{sys.executable} argv_server.py --port $PORT --instance {{instance}} --env {{env}} --dir {{publish_dir}}"

    def placeholders(text: str) -> str:
        old = f'    run: "{sys.executable} app.py"\n'
        assert old in text
        return text.replace(old, f"    run: {json.dumps(run)}\n", 1)

    e2e.edit_config(placeholders)
    assert_ok(e2e.deploy("api", "--json"))
    seen: dict[str, Any] = {}
    for _ in range(300):                  # requests are spread over the three instances: ask until each answered
        got = httpx.get(f"http://127.0.0.1:{e2e.api_port}/", timeout=5).json()
        seen[got["instance"]] = got
        if len(seen) == 3:
            break
    assert len(seen) == 3, seen
    for instance, got in seen.items():
        assert got["args"] == {"--port": got["port"], "--instance": instance, "--env": "stg", "--dir": got["cwd"]}


def test_an_unset_listen_picks_a_free_port_and_keeps_it(new_workspace: Callable[[], E2E]) -> None:
    e2e = new_workspace()

    def no_listen(text: str) -> str:
        old = f'      router: {{type: builtin, listen: "127.0.0.1:{e2e.ws.web_port}"}}\n'
        assert old in text
        return text.replace(old, "", 1)

    e2e.edit_config(no_listen)
    first = assert_ok(e2e.deploy("web", "--json")).json()
    assert first["state"] == "succeeded" and first["address"], first
    host, _, port = first["address"].rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0
    assert httpx.get(f"http://{first['address']}/version.txt", timeout=5).text.strip() == "1.0.0"
    shown = assert_ok(e2e.cli("show", first["id"], "--json")).json()
    assert any(ev["kind"] == "router.listening" and first["address"] in ev["message"] for ev in shown["events"])

    human = assert_ok(e2e.deploy("web"))             # the next deploy keeps the address, and says it
    assert f"on http://{first['address']}" in human.stdout, str(human)
    status = assert_ok(e2e.cli("status", "--json", "--service", "web", "--env", "stg")).json()
    assert [r["listen"] for r in status["status"]] == [first["address"]]


def test_state_paths_are_anchored_and_bad_state_is_refused(new_workspace: Callable[[], E2E], tmp_path: Path) -> None:
    e2e = new_workspace()
    e2e.edit_config(lambda t: re.sub(r'(?m)^state: .*$', 'state: "sqlite:///.shipyard/custom.db"', t, count=1))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = str(e2e.ws.config_path)
    assert_ok(run_cli(elsewhere, "history", "--config", config))
    assert (e2e.root / ".shipyard" / "custom.db").is_file() and list(elsewhere.iterdir()) == []

    (e2e.root / ".shipyard" / "custom.db").unlink()
    (e2e.root / ".shipyard" / "custom.db").write_bytes(b"")        # emptied (a failed copy, a `>` redirect)
    line = assert_one_error(run_cli(elsewhere, "history", "--config", config), 1)
    assert "is empty (0 bytes)" in line and "restore it from a backup" in line, line
    assert (e2e.root / ".shipyard" / "custom.db").stat().st_size == 0

    e2e.edit_config(lambda t: t.replace('state: "sqlite:///.shipyard/custom.db"', 'state: "nosuchdb://x/y"'))
    line = assert_one_error(run_cli(elsewhere, "history", "--config", config), 2)
    assert f"{config}:3: state: unknown database 'nosuchdb'" in line, line      # line 1 is a comment


def test_deploy_output_tells_the_truth(new_workspace: Callable[[], E2E]) -> None:
    e2e = new_workspace()
    anchor = "  api:\n    repo: api\n"
    e2e.edit_config(lambda t: t.replace(anchor, anchor + "    hooks: {cleanup: 'true'}\n", 1))
    res = assert_ok(e2e.deploy("api"))
    assert "finish: hook cleanup" in res.stdout and "rollback:" not in res.stdout, str(res)

    # An instance that exits at once: its exit code and log, at once, not a health deadline later.
    e2e.edit_config(lambda t: t.replace(f'    run: "{sys.executable} app.py"\n',
                                        "    run: \"/bin/sh -c 'echo cannot open the database >&2; exit 3'\"\n", 1))
    res = e2e.deploy("api", timeout=60)
    line = assert_one_error(res, 1)
    assert "exited with code 3 right after it started" in line or "restarted" in line, line
    log = re.search(r"log: (\S+\.log)", line)
    assert log, line
    assert "cannot open the database" in Path(log.group(1)).read_text()
    assert "rolled_back" in line and res.seconds < 30, str(res)
