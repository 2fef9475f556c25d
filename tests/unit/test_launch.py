"""`run` placeholders: `{env}` and `{publish_dir}` filled by the engine, `{port}`/`$PORT` by the target,
`{instance}` by the agent; nothing else touched. A static service's default `run` really serves."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
import yaml

from shipyard.agent.spec import InstanceSpec
from shipyard.agent.supervisor import Supervisor
from shipyard.config import load_config
from shipyard.config.loader import validate_config
from shipyard.domain.launch import fill, fill_argv, split_run
from shipyard.engine.settings import service_settings
from shipyard.targets.base import LaunchSpec


def test_fill_replaces_only_its_own_placeholders() -> None:
    assert fill("--port {port} --env {env} {instance}", {"env": "stg"}) == "--port {port} --env stg {instance}"
    assert fill("127.0.0.1:$PORT ${PORT} {port}", {"port": "81"}) == "127.0.0.1:81 81 81"
    assert fill("$PORTAL $PORT_X $$ {print $1} ${HOME}", {"port": "81"}) == "$PORTAL $PORT_X $$ {print $1} ${HOME}"
    assert fill_argv(["sh", "-c", "exec app --port $PORT"], {"port": "9"}) == ["sh", "-c", "exec app --port 9"]
    with pytest.raises(ValueError):
        split_run("app 'unbalanced")


def test_the_target_fills_the_port_everywhere() -> None:
    spec = LaunchSpec("api", "stg", "r", "d", Path("/"), ["app", "--bind", "127.0.0.1:$PORT", "{port}", "${PORT}"],
                      {}, 1.0)
    assert spec.argv_for(4242) == ["app", "--bind", "127.0.0.1:4242", "4242", "4242"]


def _config(tmp_path: Path, service: dict[str, object]) -> Path:
    path = tmp_path / "shipyard.yaml"
    path.write_text(yaml.safe_dump({"project": "p", "repos": {"web": {"path": "."}},
                                    "environments": {"stg": {"branch": "stg"}}, "services": {"web": service}}))
    return path


def test_a_static_service_gets_a_runnable_default(tmp_path: Path) -> None:
    path = _config(tmp_path, {"repo": "web", "kind": "static", "publish_dir": "dist"})
    settings = service_settings(load_config(path), tmp_path, "web", "stg")
    argv = settings.launch_argv(tmp_path / "rel")
    assert argv[0] == sys.executable, "`python` may not be on PATH; the interpreter that runs shipyard is"
    assert argv[1:] == ["-m", "http.server", "{port}", "--bind", "127.0.0.1", "--directory", str(tmp_path / "rel/dist")]


def test_the_engine_fills_env_and_publish_dir(tmp_path: Path) -> None:
    path = _config(tmp_path, {"repo": "web", "kind": "static", "publish_dir": "site/out",
                              "run": "serve --env {env} --root {publish_dir} --port $PORT --name {instance}"})
    argv = service_settings(load_config(path), tmp_path, "web", "stg").launch_argv(Path("/r"))
    assert argv == ["serve", "--env", "stg", "--root", "/r/site/out", "--port", "$PORT", "--name", "{instance}"]


@pytest.mark.parametrize(("service", "words"), [
    ({"repo": "web", "kind": "static", "publish_dir": "../outside"}, "relative, no '..'"),
    ({"repo": "web", "kind": "static", "publish_dir": "/var/www"}, "relative, no '..'"),
    ({"repo": "web", "run": "app 'unbalanced"}, "cannot split the command"),
])
def test_bad_run_and_publish_dir_are_config_errors(tmp_path: Path, service: dict[str, object], words: str) -> None:
    problems = validate_config(_config(tmp_path, service))
    assert problems and words in problems[0].message, [str(p) for p in problems]


async def test_the_agent_fills_the_instance_id(sup: Supervisor, tmp_path: Path) -> None:
    out = tmp_path / "argv.txt"
    code = f"import sys, pathlib, time; pathlib.Path({str(out)!r}).write_text(sys.argv[1]); time.sleep(30)"
    rec = await sup.start(InstanceSpec(service="api", env="stg", revision="0123456789", cwd=str(tmp_path),
                                       argv=[sys.executable, "-c", code, "{instance}"]))
    deadline = time.monotonic() + 10
    while not out.exists():
        assert time.monotonic() < deadline, "the instance never wrote its argv"
        await asyncio.sleep(0.05)
    assert out.read_text() == rec.id and rec.argv[-1] == rec.id
