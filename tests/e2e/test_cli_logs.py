"""`shipyard logs` end to end: a real deployed app, its real log files, the real CLI in a pipe.

The api service is deployed (three instances); its environment holds a secret, so the CLI's Redactor
knows the value. A line with that value is written straight into an instance's log file (as an app
would print a value the agent's log pipe was not told about): `logs` must mask it. Then `logs -f` runs
in the background while the test truncates a log file, rotates one by rename (still writing to the old
one), and deploys a new revision: every line arrives, the new instances' included, and SIGTERM or
SIGINT end it with exit 0 and no traceback.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.demo.workspace import commit_version
from shipyard.secrets.sealing import encode_key, new_key
from shipyard.testing.cli import run_cli as run_with_input

from .conftest import E2E, Background, assert_ok, assert_one_error

SECRET = ("LOGS_TOKEN", "logs-token-Qw3Er5Ty7Ui9")


@pytest.fixture(scope="module")
def deployed(module_workspace: E2E) -> Iterator[E2E]:
    e2e = module_workspace
    e2e.env["SHIPYARD_MASTER_KEY"] = encode_key(new_key())
    e2e.edit_config(lambda text: text.replace("  api:\n    repo: api\n", "  api:\n    repo: api\n    env: {"
                                              f"{SECRET[0]}: \"${{secret:{SECRET[0]}}}\"}}\n", 1))
    assert_ok(run_with_input(e2e.root, "secrets", "set", SECRET[0], "--env", "stg", env=e2e.env, input=SECRET[1]))
    assert_ok(e2e.deploy("api"))
    yield e2e


def _instances(e2e: E2E) -> list[dict[str, Any]]:
    return [i for i in e2e.agent_instances() if i["service"] == "api" and i["env"] == "stg"
            and i["state"] == "running"]


def _append(path: str | Path, line: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def test_logs_prints_each_instance_prefixed_and_one_alone(deployed: E2E) -> None:
    running = _instances(deployed)
    assert len(running) == 3
    res = assert_ok(deployed.cli("logs", "api", "--env", "stg", "--lines", "3"))
    for inst in running:
        own = [line for line in res.stdout.splitlines() if line.startswith(f"{inst['id']} | ")]
        assert 1 <= len(own) <= 3, res.stdout
        assert any(f"instance={inst['id']}" in line for line in own), res.stdout

    one = running[0]
    alone = assert_ok(deployed.cli("logs", "api", "--env", "stg", "--instance", one["id"][:-2]))
    assert alone.stdout and " | " not in alone.stdout.split("\n")[0], alone.stdout
    assert f"instance={one['id']}" in alone.stdout
    assert all(other["id"] not in alone.stdout for other in running[1:])

    line = assert_one_error(deployed.cli("logs", "api", "--env", "stg", "--instance", "api-stg-"), 2)
    assert "ambiguous" in line and all(i["id"] in line for i in running), line
    line = assert_one_error(deployed.cli("logs", "api", "--env", "stg", "--instance", "nope"), 2)
    assert "no instance 'nope'" in line, line
    assert_one_error(deployed.cli("logs", "nope", "--env", "stg"), 2)


def test_logs_mask_the_services_secrets(deployed: E2E) -> None:
    inst = _instances(deployed)[0]
    _append(inst["log_path"], f"connecting with token={SECRET[1]} now")
    try:
        res = assert_ok(deployed.cli("logs", "api", "--env", "stg", "--instance", inst["id"], "--lines", "1"))
        assert res.stdout == "connecting with token=*** now\n", res.stdout
        js = assert_ok(deployed.cli("logs", "api", "--env", "stg", "--instance", inst["id"], "-n", "1", "--json"))
        assert json.loads(js.stdout) == {"instance": inst["id"], "line": "connecting with token=*** now"}
        assert SECRET[1] not in res.stdout + res.stderr + js.stdout + js.stderr
    finally:
        _append(inst["log_path"], "(end of the test line)")      # the next tests read their own lines


def _stop(bg: Background, sig: signal.Signals) -> None:
    bg.proc.send_signal(sig)
    res = bg.finish(timeout=30)
    assert res.returncode == 0, str(res)
    assert "Traceback" not in res.stderr and "interrupted" not in res.stderr, str(res)


def test_follow_survives_truncation_rotation_and_a_deploy(deployed: E2E) -> None:
    first, second = _instances(deployed)[:2]
    bg = deployed.background("logs", "api", "--env", "stg", "-f", "--lines", "0")
    try:
        marker = f"marker-{os.getpid()}"
        # The follower reads from the end: poll until a line written now shows up (it has started).
        bg_line = None
        for n in range(100):
            _append(first["log_path"], f"{marker} start {n}")
            try:
                bg_line = bg.wait_for_line(rf"{marker} start", timeout=0.5)
                break
            except AssertionError:
                continue
        assert bg_line and bg_line.startswith(f"{first['id']} | "), bg_line

        _append(first["log_path"], f"{marker} secret {SECRET[1]}")
        assert bg.wait_for_line(rf"{marker} secret").rstrip("\n").endswith(f"{marker} secret ***")

        os.truncate(first["log_path"], 0)                           # logrotate copytruncate
        _append(first["log_path"], f"{marker} after truncate")
        bg.wait_for_line(rf"{first['id']} \| {marker} after truncate")

        path = Path(second["log_path"])
        old = path.with_name(path.name + ".1")
        os.rename(path, old)                                        # logrotate create: the app still has `old`
        _append(path, f"{marker} in the new file")
        bg.wait_for_line(rf"{second['id']} \| {marker} in the new file")
        _append(old, f"{marker} in the rotated file")
        bg.wait_for_line(rf"{second['id']} \| {marker} in the rotated file")

        sha = commit_version(deployed.ws, "api", "2.0.0")
        assert_ok(deployed.deploy("api"))
        new_ids = {i["id"] for i in _instances(deployed) if i["revision"] == sha}
        assert len(new_ids) == 3
        waiting = set(new_ids)
        while waiting:                                              # each new instance's start line
            line = bg.wait_for_line(r"^\S+ \| api starting version=2\.0\.0", timeout=30)
            waiting.discard(line.split(" | ", 1)[0])
    except BaseException:
        bg.kill()
        raise
    _stop(bg, signal.SIGTERM)
    assert SECRET[1] not in "".join(bg.out + bg.err)


def test_follow_ends_cleanly_on_ctrl_c(deployed: E2E) -> None:
    inst = _instances(deployed)[0]
    bg = deployed.background("logs", "api", "--env", "stg", "--instance", inst["id"], "-f", "-n", "1")
    try:
        bg.wait_for_line(r".", timeout=30)                           # the last line, unprefixed
        with open(inst["log_path"], "a", encoding="utf-8") as f:
            f.write("a prompt without its newline: ")                # given out after a moment of quiet
        bg.wait_for_line(r"^a prompt without its newline: $")
    except BaseException:
        bg.kill()
        raise
    _stop(bg, signal.SIGINT)


def test_logs_without_an_agent_is_one_line(new_workspace: Callable[[], E2E]) -> None:
    e2e = new_workspace()                 # nothing deployed: no agent runs
    line = assert_one_error(e2e.cli("logs", "api", "--env", "stg"), 1)
    assert "agent not running" in line, line
    assert not e2e.agent_instances()
