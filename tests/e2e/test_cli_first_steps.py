"""A new user's first steps: `shipyard init` in a fresh git repo and a first deploy; an env branch that
is not on the remote yet.

The config init writes must deploy without a hidden bake (before, `bake: 1m` made the first deploy take
over a minute with nothing saying why), and .shipyard/ (database, agent, releases) must never show up in
`git status`. A missing env branch is refused with the lines the README and docs/fleet.md quote.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shipyard.agent.daemon import stop_agent

from .conftest import E2E, assert_ok, assert_one_error, free_port, run_cli, wait_until, workspace_processes


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid",
                           *args], check=True, capture_output=True, text=True, timeout=30).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    repo = tmp_path / "site"
    repo.mkdir()
    subprocess.run(["git", "-c", "init.defaultBranch=main", "init", "--quiet", str(repo)], check=True, timeout=30)
    (repo / "index.html").write_text("<h1>hello</h1>\n")
    git(repo, "add", "index.html")
    git(repo, "commit", "--quiet", "-m", "first")
    git(repo, "branch", "dev")
    yield repo
    agent = repo / ".shipyard" / "agent"
    if agent.is_dir():
        stop_agent(agent, stop_instances=True, timeout=30)
    try:
        wait_until(lambda: not workspace_processes(repo), 15, "the project's processes to exit", interval=0.2)
    except AssertionError:
        left = workspace_processes(repo)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        pytest.fail(f"processes of {repo} left running: {left}", pytrace=False)


def test_init_ignores_the_state_dir_once(repo: Path) -> None:
    (repo / ".gitignore").write_text("*.log")                   # no newline at the end
    res = assert_ok(run_cli(repo, "init"))
    assert ".gitignore" in res.stdout, str(res)
    assert_ok(run_cli(repo, "init", "--force"))
    text = (repo / ".gitignore").read_text()
    assert text.startswith("*.log\n") and text.splitlines().count(".shipyard/") == 1, text
    git(repo, "check-ignore", "--quiet", ".shipyard/state.db")   # exit 0: ignored


def test_first_deploy_of_an_init_config_has_no_hidden_bake(repo: Path) -> None:
    assert_ok(run_cli(repo, "init"))
    config = repo / "shipyard.yaml"
    text = config.read_text()
    port = free_port()
    # Only what this machine needs: a free port and this Python; every other value is init's own.
    text = text.replace('dev: "127.0.0.1:8100"', f'dev: "127.0.0.1:{port}"')
    text = text.replace("run: python -m http.server", f"run: {sys.executable} -m http.server")
    config.write_text(text)
    res = assert_ok(run_cli(repo, "deploy", "site", "--env", "dev", "--json"))
    dep = res.json()
    assert dep["state"] == "succeeded", str(res)
    assert res.seconds < 45, f"the first deploy took {res.seconds:.0f}s"
    steps = assert_ok(run_cli(repo, "show", dep["id"], "--json")).json()["steps"]
    assert not [s for s in steps if s["kind"] == "analyze"], steps
    status = git(repo, "status", "--porcelain", "--untracked-files=all")
    assert ".shipyard" not in status, status
    assert "shipyard.yaml" in status and ".gitignore" in status


def test_an_env_branch_missing_on_the_remote_is_refused_before_anything_changes(
        new_workspace: Callable[[], E2E]) -> None:
    e2e = new_workspace()
    subprocess.run(["git", "-C", str(e2e.ws.origins["web"]), "branch", "--quiet", "-D", "dev"], check=True,
                   timeout=30)
    line = assert_one_error(e2e.deploy("web", env="dev"), 2)
    assert line == "error: revision 'dev' not found in repo web", line
    assert e2e.deployments() == []
    res = e2e.cli("promote", "dev", "stg", "--yes")
    line = assert_one_error(res, 1)
    assert line == "error: nothing changed: 1 of 2 repos are missing a branch (web)", line
    assert "  web: branch dev not on origin (create and push it, or check `branch:` in shipyard.yaml)" in \
        res.stdout.splitlines(), str(res)
    repos = {r["repo"]: r for r in assert_ok(e2e.cli("repos", "status", "--fetch", "--json")).json()["repos"]}
    assert repos["web"]["envs"]["dev"]["remote"] is None, repos["web"]
