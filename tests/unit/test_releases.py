"""Releases are keyed by every input of their build: a release built with dev's variables is never
served in stg, a changed build command or variable builds again, the same inputs build once."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine_env import git

from shipyard.domain.deployment import DeployState
from shipyard.engine import deployer
from shipyard.releases.store import ReleaseStore
from shipyard.store import steps as sq

BUILD = 'echo "$API_URL $SHIPYARD_ENV" > built.txt'


def _prepare_outputs(e: deployer.Environment, outcome: deployer.Outcome) -> str:
    with e.store.session() as s:
        [prep] = [st for st in sq.list_steps(s, outcome.deployment_id) if st.kind == "prepare"]
    return prep.output or ""


def _served(e: deployer.Environment) -> set[str]:
    """What each serving instance's release directory holds (its cwd, as the target was told)."""
    return {(Path(e.target.cwds[i.id]) / "built.txt").read_text().strip()      # type: ignore[attr-defined]
            for i in e.target.running.values() if i.address in {b.address for b in e.router.current if b.weight}}


def _record_cwds(e: deployer.Environment) -> None:
    e.target.cwds = {}          # type: ignore[attr-defined]
    orig = e.target.start

    async def start(spec: Any, count: int) -> Any:
        out = await orig(spec, count)
        for inst in out:
            e.target.cwds[inst.id] = str(spec.cwd)        # type: ignore[attr-defined]
        return out
    e.target.start = start              # type: ignore[method-assign]


async def test_another_environment_gets_its_own_build(env: Any, tmp_path: Path) -> None:
    _record_cwds(env)
    env.settings = replace(env.settings, build=BUILD, environ={"API_URL": "https://dev.example"}, env="dev")
    dev = await deployer.deploy(env, "v1")
    assert _served(env) == {"https://dev.example dev"}

    # stg: same store, same revision, its own variables (another Environment, as the CLI makes per env).
    stg = replace(env, settings=replace(env.settings, env="stg", environ={"API_URL": "https://stg.example"}),
                  target=type(env.target)("api", "stg"), router=type(env.router)())
    _record_cwds(stg)
    outcome = await deployer.deploy(stg, "v1")
    assert outcome.state is DeployState.SUCCEEDED and outcome.revision == dev.revision
    assert _prepare_outputs(stg, outcome) != "release already built"
    assert _served(stg) == {"https://stg.example stg"}, "stg serves a release built with dev's variables"


async def test_a_changed_variable_or_build_command_builds_again(env: Any) -> None:
    _record_cwds(env)
    env.settings = replace(env.settings, build=BUILD, environ={"API_URL": "one"})
    first = await deployer.deploy(env, "v1")
    again = await deployer.deploy(env, "v2")
    back = await deployer.deploy(env, "v1")                          # the same inputs: built once
    assert _prepare_outputs(env, back) == "release already built" and back.revision == first.revision
    assert _prepare_outputs(env, again) != "release already built"

    env.settings = replace(env.settings, environ={"API_URL": "two"})
    changed = await deployer.deploy(env, "v1")
    assert _prepare_outputs(env, changed) != "release already built"
    assert _served(env) == {"two stg"}

    env.settings = replace(env.settings, build='echo "new command" > built.txt')
    rebuilt = await deployer.deploy(env, "v1")
    assert _prepare_outputs(env, rebuilt) != "release already built"
    assert _served(env) == {"new command"}


async def test_the_release_name_and_marker_show_no_values(tmp_path: Path, repo: Path) -> None:
    from shipyard.releases.git import GitSource

    store = ReleaseStore(tmp_path / "releases")
    source = GitSource("api", None, repo, tmp_path / "mirrors")
    sha = git(repo, "rev-parse", "v1")
    secret = "hunter2-very-secret"
    path, result = await store.prepare(source, "api", sha, build="true", env={"DB_PASSWORD": secret}, timeout=30)
    assert result is not None and path.name.startswith(f"{sha}-") and secret not in path.name
    marker = json.loads((path / ".shipyard-release.json").read_text())
    assert marker["variables"] == ["DB_PASSWORD"] and secret not in json.dumps(marker)
    assert oct((tmp_path / "releases" / ".key").stat().st_mode & 0o777) == "0o600"
    # Another store (another key) names the same inputs differently: a name cannot be checked against a guess.
    other = ReleaseStore(tmp_path / "other")
    assert other.key(sha, build="true", env={"DB_PASSWORD": secret}) != path.name
    assert store.key(sha, build="true", env={"DB_PASSWORD": secret}) == path.name
    assert ReleaseStore(tmp_path / "releases").key(sha, build="true", env={"DB_PASSWORD": secret}) == path.name


async def test_prune_keeps_every_build_of_a_revision_in_use(tmp_path: Path, repo: Path) -> None:
    from shipyard.releases.git import GitSource

    store = ReleaseStore(tmp_path / "releases")
    source = GitSource("api", None, repo, tmp_path / "mirrors")
    shas = [git(repo, "rev-parse", t) for t in ("v1", "v2", "v3")]
    made = [(await store.prepare(source, "api", sha, build=None, env={"E": e}, timeout=30))[0]
            for sha in shas for e in ("dev", "stg")]
    removed = store.prune("api", 1, protect={shas[0]})
    kept = {p.name for p in (tmp_path / "releases" / "api").iterdir() if p.is_dir()}
    assert {p.name for p in made if p.name.startswith(shas[0])} <= kept
    assert len(removed) == 3 and all(not r.startswith(shas[0]) for r in removed)
