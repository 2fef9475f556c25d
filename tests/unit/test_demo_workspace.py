"""The demo workspace: real git repos and bare origins in a temp dir, and a config that parses."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest
import yaml

from shipyard.demo.workspace import (
    BRANCHES,
    GitError,
    Workspace,
    commit_version,
    create_workspace,
    git,
    origin_tip,
)


@pytest.fixture
def isolated_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No global git config at all: the workspace must not depend on the user's identity or settings."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def ws(tmp_path: Path, isolated_git: None) -> Workspace:
    return create_workspace(tmp_path / "demo", api_port=18080, web_port=18081)


def show(origin: Path, rev: str, path: str) -> str:
    return git(origin, "show", f"{rev}:{path}")


def test_layout(ws: Workspace) -> None:
    for name in ("api", "web"):
        origin, clone = ws.origins[name], ws.repos[name]
        assert origin == ws.root / "origins" / f"{name}.git"
        assert clone == ws.root / "repos" / name
        assert git(origin, "rev-parse", "--is-bare-repository") == "true"
        assert git(clone, "rev-parse", "--abbrev-ref", "HEAD") == "main"
        assert git(clone, "status", "--porcelain") == ""
    assert (ws.repos["api"] / "app.py").is_file()
    assert (ws.repos["web"] / "build.py").is_file() and (ws.repos["web"] / "index.html").is_file()
    assert not list(ws.root.rglob("__pycache__"))
    assert ws.config_path == ws.root / "shipyard.yaml"


def test_origin_branches_start_at_v1(ws: Workspace) -> None:
    for name in ("api", "web"):
        origin = ws.origins[name]
        heads = git(origin, "for-each-ref", "--format=%(refname:short)", "refs/heads").split()
        assert sorted(heads) == sorted(BRANCHES)
        tips = {origin_tip(ws, name, b) for b in BRANCHES}
        assert len(tips) == 1
        assert git(origin, "log", "-1", "--format=%s", "main") == "v1"
        assert show(origin, "stg", "VERSION").strip() == "1.0.0"
        assert git(origin, "symbolic-ref", "HEAD") == "refs/heads/main"
        # shipyard's clone tracks every environment branch
        clone = ws.repos[name]
        for b in BRANCHES:
            assert git(clone, "rev-parse", "--abbrev-ref", f"{b}@{{upstream}}") == f"origin/{b}"


def test_commit_version_pushes_to_origin(ws: Workspace) -> None:
    v1 = origin_tip(ws, "api", "stg")
    sha = commit_version(ws, "api", "1.1.0")
    assert sha == origin_tip(ws, "api", "stg")
    assert git(ws.origins["api"], "rev-parse", f"{sha}^") == v1  # a fast-forward on top of v1
    assert show(ws.origins["api"], "stg", "VERSION").strip() == "1.1.0"
    assert origin_tip(ws, "api", "dev") == v1 and origin_tip(ws, "api", "main") == v1
    assert origin_tip(ws, "web", "stg") != sha
    # shipyard's own clone is untouched until it fetches, as with a remote developer
    clone = ws.repos["api"]
    assert git(clone, "rev-parse", "stg") == v1
    git(clone, "fetch", "--quiet", "origin")
    assert git(clone, "rev-parse", "origin/stg") == sha


def test_commit_version_health_fail_and_recovery(ws: Workspace) -> None:
    bad = commit_version(ws, "api", "1.2.0", health_fail=True, branch="dev")
    origin = ws.origins["api"]
    assert "FAIL_HEALTH" in git(origin, "ls-tree", "--name-only", bad).split()
    good = commit_version(ws, "api", "1.2.1", branch="dev")
    assert git(origin, "rev-parse", f"{good}^") == bad
    assert "FAIL_HEALTH" not in git(origin, "ls-tree", "--name-only", good).split()
    assert show(origin, good, "VERSION").strip() == "1.2.1"


def test_commit_version_same_version_still_new_commit(ws: Workspace) -> None:
    first = commit_version(ws, "web", "2.0.0", branch="main")
    second = commit_version(ws, "web", "2.0.0", branch="main")
    assert first != second
    assert origin_tip(ws, "web", "main") == second


def test_commit_version_new_branch_starts_from_main(ws: Workspace) -> None:
    sha = commit_version(ws, "api", "3.0.0", branch="feature-x")
    assert origin_tip(ws, "api", "feature-x") == sha
    assert git(ws.origins["api"], "rev-parse", f"{sha}^") == origin_tip(ws, "api", "main")


def test_commit_version_unknown_service(ws: Workspace) -> None:
    with pytest.raises(KeyError, match="unknown demo service"):
        commit_version(ws, "nope", "1.0.0")


def test_config_parses(ws: Workspace) -> None:
    cfg = yaml.safe_load(ws.config_path.read_text())
    assert cfg["project"] == "demo"
    envs = cfg["environments"]
    assert {name: e["branch"] for name, e in envs.items()} == {"dev": "dev", "stg": "stg", "prod": "main"}
    assert envs["stg"]["promote_from"] == "dev" and envs["prod"]["promote_from"] == "stg"
    for name in ("api", "web"):
        assert cfg["repos"][name] == {"url": str(ws.origins[name]), "path": str(ws.repos[name])}
    api = cfg["services"]["api"]
    assert api["repo"] == "api"
    assert shlex.split(api["run"]) == [sys.executable, "app.py"]
    assert api["health"] == {
        "type": "http",
        "path": "/health",
        "interval": "0.2s",
        "timeout": "1s",
        "healthy_threshold": 2,
        "unhealthy_threshold": 2,
        "start_period": "5s",
    }
    assert api["deploy"]["target"] == {"type": "local", "instances": 3}
    assert api["deploy"]["router"] == {"type": "builtin", "listen": "127.0.0.1:18080"}
    assert api["deploy"]["strategy"] == {"type": "rolling", "batch_size": 1}
    web = cfg["services"]["web"]
    assert shlex.split(web["build"]) == [sys.executable, "build.py"]
    assert shlex.split(web["run"]) == [
        sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1", "--directory", "dist",
    ]  # fmt: skip
    assert web["deploy"]["router"]["listen"] == "127.0.0.1:18081"


def test_refuses_to_overwrite(ws: Workspace) -> None:
    with pytest.raises(FileExistsError):
        create_workspace(ws.root, api_port=1, web_port=2)


def test_git_errors_carry_stderr(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="not a git repository"):
        git(tmp_path, "log")
