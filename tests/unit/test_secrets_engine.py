"""Secrets in the engine (resolved before anything starts, masked in the journal), the agent's sealed
state file, and the renderer's masking."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shipyard.agent.spec import take_redact
from shipyard.agent.state import AgentState, InstanceRecord, StateFile
from shipyard.cli import render
from shipyard.config.checks import ExecCheck
from shipyard.domain.deployment import DeployState
from shipyard.engine import deployer
from shipyard.engine.settings import HookSpec, ServiceSettings
from shipyard.errors import MissingSecretsError
from shipyard.releases.git import GitSource
from shipyard.releases.store import ReleaseStore
from shipyard.secrets.redact import REDACT_ENV, Redactor
from shipyard.store import Store
from shipyard.store import deployments as dq
from shipyard.store import events as eq
from shipyard.store import steps as sq
from shipyard.strategies import AllAtOnce
from shipyard.testing import FakeRouter, FakeTarget

SECRET = "s3cr3t-pa55word"


@pytest.fixture
def env(tmp_path: Path) -> Any:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "stg"], cwd=repo, check=True)
    (repo / "VERSION").write_text("1")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "v1"], cwd=repo, check=True)
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    check = ExecCheck(type="exec", command="true", interval=0.02, timeout=2, healthy_threshold=1,
                      unhealthy_threshold=1, start_period=0, deadline=10)
    settings = ServiceSettings(
        service="api", env="stg", branch="stg", source=GitSource("api", None, repo, tmp_path / "mirrors"),
        build='echo "build sees $DB_PASSWORD"', build_timeout=30, run="python app.py", migrate=None,
        environ={"A": "1"}, instances=1, stop_timeout=1, listen="127.0.0.1:1", strategy=AllAtOnce(),
        drain_timeout=1, ws_drain_timeout=1, bake=0, keep_previous=0, step_timeout=30, keep_releases=5,
        health=check, health_wait=10,
        hooks={"after_install": HookSpec('echo "hook sees $DB_PASSWORD"; echo "$DB_PASSWORD" | base64', 10)})
    e = deployer.Environment(settings=settings, store=store, target=FakeTarget("api", "stg"), router=FakeRouter(),
                             releases=ReleaseStore(tmp_path / "releases"), actor="tester")
    yield e
    store.close()


async def test_missing_values_refuse_the_deploy_before_anything_is_recorded(env: Any) -> None:
    def source(service: str, name: str) -> dict[str, str]:
        raise MissingSecretsError("api/stg: missing or empty: JWT, WS_PORT", ["JWT", "WS_PORT"])

    env.secrets = source
    with pytest.raises(MissingSecretsError):
        await deployer.deploy(env)
    with env.store.session() as s:
        assert dq.list_deployments(s) == []
        refused = eq.list_events(s, kind="deploy.refused")
        assert [e.data["missing"] for e in refused] == [["JWT", "WS_PORT"]]
    assert env.target.running == {}


async def test_resolved_values_reach_hooks_and_instances_but_never_the_store(env: Any, tmp_path: Path) -> None:
    seen: list[Any] = []
    events: list[tuple[str, dict[str, Any]]] = []
    orig = env.target.start

    async def start(spec: Any, count: int) -> Any:
        seen.append(spec)
        return await orig(spec, count)

    env.target.start = start
    env.listener = lambda kind, data: events.append((kind, data))
    env.secrets = lambda service, name: {"DB_PASSWORD": SECRET}
    env.redactor.add(SECRET)          # what SecretsContext.resolve does as it resolves
    outcome = await deployer.deploy(env)
    assert outcome.state is DeployState.SUCCEEDED
    environ = dict(seen[0].environ)
    assert environ["DB_PASSWORD"] == SECRET and take_redact(environ) == [SECRET] and REDACT_ENV not in environ
    with env.store.session() as s:
        outputs = [r.output or "" for r in sq.list_steps(s, outcome.deployment_id)]
        stored = json.dumps([e.message for e in eq.list_events(s, limit=None)]) + "".join(outputs)
    assert "hook sees ***" in stored and "build sees ***" in stored and SECRET not in stored
    assert "***" in "".join(outputs)                        # the base64 form is masked too
    build_log = next((tmp_path / "releases" / "api").glob("*/.shipyard-build.log")).read_text()
    assert build_log.strip() == "build sees ***"
    assert SECRET not in json.dumps(events, default=str)


def test_agent_state_keeps_environments_sealed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sf = StateFile(tmp_path / "state.json")
    rec = InstanceRecord(id="i", service="s", env="e", revision="r", cwd="/", argv=["a"], port=1, log_path="l",
                         environ={"DB_PASSWORD": SECRET}, redact=[SECRET])
    sf.save(AgentState(instances=[rec]))
    assert SECRET not in sf.path.read_text() and "DB_PASSWORD" not in sf.path.read_text()
    assert oct(sf.key_path.stat().st_mode & 0o777) == "0o600"
    assert StateFile(sf.path).load().instances == [rec]
    sf.key_path.write_text("AAAA" * 11 + "\n")           # another (valid-looking) key: nothing opens
    with caplog.at_level(logging.ERROR):
        loaded = StateFile(sf.path).load().instances[0]
    assert loaded.environ == {} and loaded.redact == [] and "cannot open the environment" in caplog.text


def test_renderer_masks_everything_it_prints(capsys: pytest.CaptureFixture[str]) -> None:
    render.use_redactor(Redactor([SECRET]))
    try:
        render.info(f"value {SECRET}")
        render.print_json({"a": [SECRET], SECRET: 1})
        render.table("t", ["name", "value"], [("x", SECRET)])
        render.console.print(f"[bold]{SECRET}[/]")
        render.error(f"failed with {SECRET}")
        out = capsys.readouterr()
        assert SECRET not in out.out + out.err and out.out.count("***") >= 5 and "***" in out.err
        render.reveal(SECRET)
        assert capsys.readouterr().out == SECRET + "\n"
    finally:
        render.use_redactor(Redactor())
