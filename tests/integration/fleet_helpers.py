"""A fleet of real git repos for the fleet tests: bare remotes, shipyard's clones, a developer's clones.

Layout under `root` (all real git, argv lists, no shell):
    origins/<name>.git   bare remotes (the repos' `url`)
    clones/<name>        the clones shipyard works in (the repos' `path`), on branch main
    devs/<name>          a developer's clones: `commit()` commits and pushes from here, so shipyard's
                         clones only learn about new work by fetching, as in real life
    shipyard.yaml        dev -> stg -> prod (branch main), tags stg-deploy-{ts} / deploy-{ts}
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipyard.config import load_config
from shipyard.fleet.context import FleetContext, Prepared
from shipyard.fleet.execute import Outcome, execute
from shipyard.fleet.promote import prepare_promotion
from shipyard.store import Store
from shipyard.store import promotions as pq
from shipyard.testing.cli import CliResult
from shipyard.testing.cli import run_cli as shared_run_cli

IDENTITY = ("Fleet Tester", "fleet@test.invalid")
BRANCHES = ("dev", "stg", "main")
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_AUTHOR_NAME": IDENTITY[0],
           "GIT_AUTHOR_EMAIL": IDENTITY[1], "GIT_COMMITTER_NAME": IDENTITY[0], "GIT_COMMITTER_EMAIL": IDENTITY[1]}

CONFIG = """\
project: fleet
timezone: Asia/Seoul
state: {state}
repos:
{repos}
environments:
  dev:  {{branch: dev, confirm: none}}
  stg:  {{branch: stg, promote_from: dev, tag: "stg-deploy-{{ts}}", confirm: {stg_confirm}}}
  prod: {{branch: main, promote_from: stg, tag: "deploy-{{ts}}", confirm: twice, allow_force: true}}
{extra}"""


def git(cwd: Path, *args: str, check: bool = True) -> str:
    """One git command with a pinned identity and no prompts; stdout stripped."""
    argv = ["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", *args]
    proc = subprocess.run(argv, cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} in {cwd} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


@dataclass
class Fleet:
    root: Path
    names: list[str]
    origins: dict[str, Path] = field(default_factory=dict)
    clones: dict[str, Path] = field(default_factory=dict)
    devs: dict[str, Path] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.root / "shipyard.yaml"

    @property
    def state_db(self) -> Path:
        return self.root / ".shipyard" / "state.db"

    def write_config(self, *, stg_confirm: str = "none", extra: str = "", groups: dict[str, list[str]] | None = None,
                     url_only: Iterable[str] = ()) -> None:
        lines = []
        for name in self.names:
            g = (groups or {}).get(name, [])
            path = "" if name in url_only else f", path: {json.dumps(str(self.clones[name]))}"
            lines.append(f"  {name}: {{url: {json.dumps(str(self.origins[name]))}{path}, groups: {json.dumps(g)}}}")
        self.config_path.write_text(CONFIG.format(state=json.dumps(f"sqlite:///{self.state_db}"),
                                                  repos="\n".join(lines), stg_confirm=stg_confirm, extra=extra))

    def commit(self, name: str, branch: str, files: dict[str, str], message: str = "change") -> str:
        """Commit `files` on `branch` in the developer's clone and push it; returns the new sha."""
        dev = self.devs[name]
        git(dev, "fetch", "--quiet", "origin")
        git(dev, "checkout", "--quiet", "-B", branch, f"origin/{branch}")
        for rel, text in files.items():
            (dev / rel).parent.mkdir(parents=True, exist_ok=True)
            (dev / rel).write_text(text)
        git(dev, "add", "--all")
        git(dev, "commit", "--quiet", "-m", message)
        git(dev, "push", "--quiet", "origin", f"HEAD:refs/heads/{branch}")
        return git(dev, "rev-parse", "HEAD")

    def sha(self, name: str, branch: str) -> str:
        """The remote's tip of `branch` (what a promotion moved, or not)."""
        return git(self.origins[name], "rev-parse", f"refs/heads/{branch}")

    def tree(self, name: str, rev: str) -> str:
        return git(self.origins[name], "rev-parse", f"{rev}^{{tree}}")

    def tags(self, name: str) -> set[str]:
        out = git(self.origins[name], "for-each-ref", "--format=%(refname:short)", "refs/tags/")
        return set(out.split()) if out else set()

    def remote_state(self) -> dict[str, dict[str, str]]:
        """name -> every ref of its remote -> sha: compare before/after to prove nothing changed."""
        out: dict[str, dict[str, str]] = {}
        for name in self.names:
            refs = git(self.origins[name], "for-each-ref", "--format=%(refname) %(objectname)")
            out[name] = dict(line.split(" ", 1) for line in refs.splitlines()) if refs else {}
        return out

    def local_state(self) -> dict[str, tuple[str, str, str]]:
        """name -> (HEAD, local refs, status) of shipyard's clones: the user's side must not change."""
        out = {}
        for name in self.names:
            c = self.clones[name]
            out[name] = (git(c, "rev-parse", "HEAD"),
                         git(c, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/", "refs/tags/"),
                         git(c, "status", "--porcelain"))
        return out


def make_fleet(root: Path, count: int, *, prefix: str = "svc") -> Fleet:
    """`count` repos, each with dev/stg/main at one initial commit, pushed to its own bare remote.

    The first repo is built with git; the others are copies with their remotes re-pointed (a few
    milliseconds instead of a dozen git processes each: the fleet tests create many fleets).
    """
    root.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(root, [f"{prefix}{i}" for i in range(count)])
    for p in ("origins", "clones", "devs"):
        (root / p).mkdir(parents=True, exist_ok=True)
    first = fleet.names[0]
    origin, clone, dev = root / "origins" / f"{first}.git", root / "clones" / first, root / "devs" / first
    git(root, "init", "--quiet", "--bare", str(origin))
    git(root, "init", "--quiet", str(clone))
    (clone / "README").write_text("service\n")
    (clone / "app.txt").write_text("v1\n")
    git(clone, "config", "user.name", IDENTITY[0])
    git(clone, "config", "user.email", IDENTITY[1])
    git(clone, "add", "--all")
    git(clone, "commit", "--quiet", "-m", "initial")
    git(clone, "branch", "dev")
    git(clone, "branch", "stg")
    git(clone, "remote", "add", "origin", str(origin))
    git(clone, "push", "--quiet", "--set-upstream", "origin", *BRANCHES)
    git(root, "clone", "--quiet", str(origin), str(dev))
    git(dev, "config", "user.name", IDENTITY[0])
    git(dev, "config", "user.email", IDENTITY[1])
    fleet.origins[first], fleet.clones[first], fleet.devs[first] = origin, clone, dev
    for name in fleet.names[1:]:
        o, c, d = root / "origins" / f"{name}.git", root / "clones" / name, root / "devs" / name
        shutil.copytree(origin, o, symlinks=True)
        shutil.copytree(clone, c, symlinks=True)
        shutil.copytree(dev, d, symlinks=True)
        git(c, "remote", "set-url", "origin", str(o))
        git(d, "remote", "set-url", "origin", str(o))
        fleet.origins[name], fleet.clones[name], fleet.devs[name] = o, c, d
    fleet.write_config()
    return fleet


# ---- the fleet API, in-process ------------------------------------------------------------------------
class Driver:
    """A fleet plus an open store and the fleet API, run to completion (asyncio.run) per call."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.store = Store.open(f"sqlite:///{fleet.state_db}")

    def ctx(self, jobs: int = 4) -> FleetContext:
        return FleetContext(load_config(self.fleet.config_path), self.fleet.root, self.store, "tester", jobs)

    def prepare(self, source: str = "dev", target: str = "stg", jobs: int = 4, **kw: Any) -> Prepared:
        return asyncio.run(prepare_promotion(self.ctx(jobs), source, target, **kw))

    def execute(self, prepared: Prepared, jobs: int = 4, **kw: Any) -> Outcome:
        return asyncio.run(execute(self.ctx(jobs), prepared, **kw))

    def promote(self, source: str = "dev", target: str = "stg", **kw: Any) -> Outcome:
        return self.execute(self.prepare(source, target, **kw))

    def record(self, plan_id: str) -> tuple[str, dict[str, str]]:
        with self.store.session() as s:
            row = pq.get_promotion(s, plan_id)
            assert row is not None
            return row.state, {r.repo: r.result for r in pq.promotion_repos(s, plan_id)}


# ---- the CLI as a user runs it --------------------------------------------------------------------------
def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_") and k != "CI"}
    env.update(PYTHONUNBUFFERED="1", NO_COLOR="1", TERM="dumb", COLUMNS="160", SHIPYARD_ACTOR="fleet-test")
    env.update(extra)
    return env


def run_cli(cwd: Path, *args: str, input: str | None = None, timeout: float = 60.0,
            **extra_env: str) -> CliResult:
    """`shipyard ARGS` in `cwd`; stdin is `input` (or /dev/null: no terminal, no input)."""
    return shared_run_cli(cwd, *args, env=cli_env(**extra_env), input=input, timeout=timeout)
