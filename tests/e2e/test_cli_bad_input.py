"""Bad input through the real CLI: every mistake gets exit 2 (usage/config) or 1 (the operation failed),
exactly one `error:` line on stderr, never a traceback, and leaves no half-made state behind (no new
running instance, no deployment left queued or in progress).

Read-only mistakes share one workspace that is never deployed; mistakes that change the config or the
workspace get a workspace of their own (or a copy of the config in a directory of their own).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from shipyard.demo.workspace import origin_tip

from .conftest import (
    E2E,
    UNFINISHED,
    assert_ok,
    assert_one_error,
    instance_processes,
    run_cli,
    workspace_processes,
)


def assert_no_half_made_state(e2e: E2E, instances_before: dict[int, str] | None = None) -> None:
    unfinished = [(d["id"], d["state"]) for d in e2e.deployments() if d["state"] in UNFINISHED]
    assert not unfinished, f"deployments left unfinished: {unfinished}"
    assert instance_processes(e2e.root) == (instances_before or {}), "new app instances were started"


# ---- config errors -------------------------------------------------------------------------------------

def _sub(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)
    return edit


LONG_NAME = "a" * 300

# name -> (edit of the demo config, the line the problem is on (a substring of it; None: any), what the
# message must contain)
CONFIG_ERRORS: dict[str, tuple[Callable[[str], str], str | None, list[str]]] = {
    "yaml-syntax": (_sub("  dev:  {branch: dev, auto_deploy: true}\n", "  dev:  {branch: dev, auto_deploy: [true}\n"),
                    None, ["invalid YAML"]),
    "unknown-key": (_sub("  api:\n    repo: api\n", "  api:\n    repo: api\n    instnaces: 3\n"),
                    "    instnaces: 3", ["services.api.instnaces: unknown key", "allowed:"]),
    "bad-duration": (_sub("interval: 0.2s", "interval: soonish"),       # the first one is api's
                     "interval: soonish", ["services.api.health.interval: invalid duration 'soonish'"]),
    "unknown-repo": (_sub("    repo: api\n", "    repo: api-server\n"),
                     "    repo: api-server", ["services.api.repo: 'api-server': unknown repo", "known: api, web"]),
    # A name that passed validation used to kill the deploy with a traceback (a path too long), in progress.
    "name-too-long": (_sub("  api:\n    repo: api\n", f"  {LONG_NAME}:\n    repo: api\n"),
                      f"  {LONG_NAME}:", [f"services.{LONG_NAME}: invalid name", "at most 63 characters"]),
}


@pytest.mark.parametrize("case", list(CONFIG_ERRORS))
def test_config_error_is_reported_with_file_and_line(case: str, module_workspace: E2E, tmp_path: Path) -> None:
    edit, marker, fragments = CONFIG_ERRORS[case]
    project = tmp_path / "project"
    project.mkdir()
    config = project / "shipyard.yaml"
    text = edit(module_workspace.ws.config_path.read_text(encoding="utf-8"))
    config.write_text(text, encoding="utf-8")
    where = rf"{re.escape(str(config))}:\d+: "
    if marker is not None:
        line_no = next(n for n, line in enumerate(text.splitlines(), 1) if marker in line)
        where = rf"{re.escape(str(config))}:{line_no}: "

    res = run_cli(project, "config", "validate")
    assert res.returncode == 2, str(res)
    assert "Traceback" not in res.stderr + res.stdout, str(res)
    assert res.error_lines, str(res)
    assert all(line.startswith("error: ") for line in res.error_lines), str(res)
    first = res.error_lines[0]
    assert re.match(rf"error: {where}", first), str(res)
    for fragment in fragments:
        assert fragment in first, str(res)

    res = run_cli(project, "deploy", "api", "--env", "stg")
    line = assert_one_error(res, 2)
    assert re.match(rf"error: {where}", line), str(res)
    assert fragments[0] in line, str(res)
    assert not (project / ".shipyard").exists(), "a deploy with a broken config created state"
    assert_no_half_made_state(module_workspace)
    assert not module_workspace.deployments()


def test_no_config_found_hints_at_init(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    line = assert_one_error(run_cli(empty, "deploy", "api", "--env", "stg"), 2)
    assert "no shipyard.yaml" in line and "shipyard init" in line, line
    assert list(empty.iterdir()) == []


def test_init_writes_a_valid_config_and_refuses_to_overwrite(tmp_path: Path) -> None:
    repo = tmp_path / "myservice"
    repo.mkdir()
    subprocess.run(["git", "-c", "init.defaultBranch=main", "init", "--quiet", str(repo)], check=True, timeout=30)
    res = assert_ok(run_cli(repo, "init"))
    config = repo / "shipyard.yaml"
    assert config.is_file(), str(res)
    written = config.read_text(encoding="utf-8")
    assert "myservice" in written

    res = assert_ok(run_cli(repo, "config", "validate"))
    assert f"{config}: ok" in res.stdout, str(res)

    line = assert_one_error(run_cli(repo, "init"), 2)
    assert "already exists" in line and "--force" in line, line
    assert config.read_text(encoding="utf-8") == written


# ---- unknown names and bad arguments ---------------------------------------------------------------------

BAD_ARGS: dict[str, tuple[tuple[str, ...], list[str]]] = {
    "unknown-service": (("deploy", "nope", "--env", "stg"), ["unknown service 'nope'", "api, web"]),
    "unknown-env": (("deploy", "api", "--env", "nope"), ["unknown environment 'nope'", "dev, prod, stg"]),
    "unknown-rev": (("deploy", "api", "--env", "stg", "--rev", "doesnotexist"), ["'doesnotexist'", "not found"]),
    "unknown-deployment": (("show", "nope"), ["'nope'", "shipyard history"]),
    "unknown-strategy": (("deploy", "api", "--env", "stg", "--strategy", "bogus"), ["'bogus'", "rolling"]),
    "rollback-without-history": (("rollback", "api", "--env", "stg"), ["no successful deployment"]),
    "missing-option": (("deploy", "api"), ["--env"]),
    "bad-set-name": (("deploy", "api", "--env", "stg", "--set", "LOG-LEVEL=debug"),
                     ["--set", "invalid environment variable name 'LOG-LEVEL'"]),
}


@pytest.mark.parametrize("case", list(BAD_ARGS))
def test_bad_argument_is_a_usage_error(case: str, module_workspace: E2E) -> None:
    args, fragments = BAD_ARGS[case]
    line = assert_one_error(module_workspace.cli(*args), 2)
    for fragment in fragments:
        assert fragment in line, line
    assert_no_half_made_state(module_workspace)
    assert not module_workspace.deployments(), "a refused request left a deployment record"


# ---- operations that fail -----------------------------------------------------------------------------

def test_failed_build_starts_nothing(new_workspace: Callable[[], E2E]) -> None:
    e2e = new_workspace()
    e2e.edit_config(lambda t: t.replace("  api:\n    repo: api\n", '  api:\n    repo: api\n    build: "exit 3"\n', 1))
    sha = origin_tip(e2e.ws, "api", "stg")

    res = e2e.deploy("api", "--json")
    line = assert_one_error(res, 1)
    out = res.json()
    assert out["state"] == "failed" and out["revision"] == sha, str(res)
    assert "build" in out["reason"] and "exited 3" in out["reason"], str(res)
    assert "failed" in line and "build" in line, line

    assert_no_half_made_state(e2e)
    assert not [i for i in e2e.agent_instances() if i["revision"] == sha], e2e.agent_instances()
    [row] = e2e.deployments()
    assert (row["id"], row["state"]) == (out["id"], "failed")
    assert row["finished_at"] is not None


def test_router_port_in_use(new_workspace: Callable[[], E2E]) -> None:
    e2e = new_workspace()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", e2e.api_port))
        squatter.listen()
        res = e2e.deploy("api")
        line = assert_one_error(res, 1, 2)
        assert str(e2e.api_port) in line and "in use" in line, line
        assert_no_half_made_state(e2e)
        assert [d["state"] for d in e2e.deployments()] == ["cancelled"]

    # Nothing of the refused attempt is in the way once the port is free again.
    res = assert_ok(e2e.deploy("api", "--json"))
    assert res.json()["state"] == "succeeded", str(res)


def test_agent_unreachable(new_workspace: Callable[[], E2E]) -> None:
    e2e = new_workspace()
    agent_dir = e2e.agent_dir
    if agent_dir.exists():
        shutil.rmtree(agent_dir)
    agent_dir.write_text("not a directory\n", encoding="utf-8")
    try:
        line = assert_one_error(e2e.deploy("api"), 1, 2)
        assert "agent" in line and str(agent_dir) in line, line
        res = assert_ok(e2e.cli("agent", "stop"))
        assert "not running" in res.stdout, str(res)
        assert not e2e.deployments(), "a deploy that could not reach the agent left a record"
        assert not workspace_processes(e2e.root)
    finally:
        agent_dir.unlink()

