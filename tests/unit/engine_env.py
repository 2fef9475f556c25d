"""The engine's unit-test world: a real git repo (tags v1, v2, v3 on branch stg), a real SQLite store and
FakeTarget/FakeRouter. Health uses an exec check that fails for instances whose port has a marker file in
`bad_dir`, so a test decides which instances are unhealthy without any network."""

from __future__ import annotations

import subprocess
from pathlib import Path

from shipyard.config.checks import ExecCheck
from shipyard.engine import deployer
from shipyard.engine.settings import ServiceSettings
from shipyard.releases.git import GitSource
from shipyard.releases.store import ReleaseStore
from shipyard.store import Store
from shipyard.strategies import Rolling
from shipyard.testing import FakeRouter, FakeTarget


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


def make_repo(path: Path) -> Path:
    path.mkdir()
    git(path, "init", "-q", "-b", "stg")
    for v in ("1", "2", "3"):
        (path / "VERSION").write_text(v)
        git(path, "add", "-A")
        git(path, "commit", "-qm", f"v{v}")
        git(path, "tag", f"v{v}")
    return path


def make_env(tmp_path: Path, repo: Path) -> deployer.Environment:
    """An Environment for api/stg with 3 instances, rolling; close `e.store` when done."""
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    bad = tmp_path / "bad"
    bad.mkdir()
    check = ExecCheck(type="exec", command=f'test ! -e "{bad}/$HEALTH_PORT"', interval=0.02, timeout=2,
                      healthy_threshold=1, unhealthy_threshold=1, start_period=0, deadline=10)
    settings = ServiceSettings(
        service="api", env="stg", branch="stg", source=GitSource("api", None, repo, tmp_path / "mirrors"),
        build="echo built > BUILT", build_timeout=30, run="python app.py", migrate=None, environ={"A": "1"},
        instances=3, stop_timeout=1, listen="127.0.0.1:1", strategy=Rolling(drain_timeout=1), drain_timeout=1,
        ws_drain_timeout=1, bake=0, keep_previous=300, step_timeout=30, keep_releases=5, health=check,
        health_wait=10, hooks={})
    e = deployer.Environment(settings=settings, store=store, target=FakeTarget("api", "stg"), router=FakeRouter(),
                             releases=ReleaseStore(tmp_path / "releases"), actor="tester")
    e.bad_dir = bad  # type: ignore[attr-defined]
    return e
