"""`shipyard notify test` and `notify worker --drain` as a user runs them, against a real receiver;
channel secrets come from the project's secret provider (here: env variables)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.engine.journal import Journal
from shipyard.store import Store
from shipyard.store.deployments import create_deployment
from shipyard.testing.receivers import HttpReceiver


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    """A receiver on its own loop thread, so the CLI subprocess can talk to it while the test blocks."""
    import asyncio

    loop = asyncio.new_event_loop()
    rx = HttpReceiver()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    asyncio.run_coroutine_threadsafe(rx.start(), loop).result(5)
    yield rx
    asyncio.run_coroutine_threadsafe(rx.stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    t.join(5)


def _project(tmp_path: Path, url: str) -> Path:
    (tmp_path / "shipyard.yaml").write_text(f"""\
project: demo
environments:
  dev: {{branch: dev}}
secrets: {{provider: env, env_prefix: NT_}}
notifications:
  channels:
    hook: {{type: webhook, url: "{url}/${{secret:HOOK_PATH}}", secret: "${{secret:HOOK_KEY}}"}}
  routes:
    - {{events: ["deploy.*"], to: [hook]}}
""")
    return tmp_path


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NT_HOOK_PATH": "in", "NT_HOOK_KEY": "k3y-value-123"}
    return subprocess.run([sys.executable, "-m", "shipyard.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_notify_test_sends_with_resolved_secrets(tmp_path: Path, receiver: HttpReceiver) -> None:
    root = _project(tmp_path, receiver.url)
    res = _cli(root, "notify", "test", "hook")
    assert res.returncode == 0, res.stderr
    (req,) = receiver.requests
    assert req.path == "/in" and req.json()["kind"] == "notify.test"
    assert "k3y-value-123" not in res.stdout + res.stderr
    assert _cli(root, "notify", "test", "nope").returncode == 2


def test_notify_worker_drains_the_outbox(tmp_path: Path, receiver: HttpReceiver) -> None:
    root = _project(tmp_path, receiver.url)
    from shipyard.config import load_config
    from shipyard.store import default_url

    cfg = load_config(root / "shipyard.yaml")
    with Store.open(default_url(root)) as store:
        with store.session() as s:
            create_deployment(s, deployment_id="deploy-x", service="api", env="dev", revision="b" * 40,
                              strategy="rolling", actor="me")
        j = Journal(store, "deploy-x", "api", "dev", notifications=cfg.notifications)
        j.event("deploy.started", "one")
        j.event("deploy.succeeded", "two")
    res = _cli(root, "notify", "worker", "--drain", "--timeout", "10")
    assert res.returncode == 0, res.stderr
    assert "delivered 2" in res.stdout + res.stderr
    assert [r.json()["kind"] for r in receiver.requests] == ["deploy.started", "deploy.succeeded"]


def test_watch_without_alarms_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "shipyard.yaml").write_text("project: demo\nenvironments:\n  dev: {branch: dev}\n")
    res = _cli(tmp_path, "watch", "--for", "1")
    assert res.returncode == 2 and "nothing to watch" in res.stderr
