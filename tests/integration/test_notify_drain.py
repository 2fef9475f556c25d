"""A deploy's notification drain ends at its deadline (issue 8, section 5).

A real deploy of the demo api (3 instances, rolling) with every event routed to a Slack webhook (a real
receiver, paced at one message per second as Slack requires) records more events than 5 seconds of
pacing can send. The CLI must exit within the documented 5 s drain after the deployment finished
(measured from the deployment's recorded `finished_at`, plus a margin for closing the agent client and
the interpreter), leaving the rest queued and due; `notify worker --drain` then delivers every event
exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.agent.daemon import agent_status, stop_agent
from shipyard.demo.workspace import Workspace, create_workspace
from shipyard.ipc import free_port
from shipyard.store import Store
from shipyard.store import outbox as ob
from shipyard.store.deployments import list_deployments
from shipyard.testing.cli import run_cli
from shipyard.testing.receivers import HttpReceiver, ThreadedHttpReceiver

try:
    from .test_secrets_support import cli_env
except ImportError:
    from test_secrets_support import cli_env  # type: ignore[no-redef]

pytestmark = pytest.mark.timeout(300)
DRAIN = 5.0       # cli/notify.py DRAIN_AFTER_DEPLOY, as docs/notifications.md promises
MARGIN = 3.5      # closing the agent client and the interpreter, on a loaded 2-core machine




@pytest.fixture
def slack() -> Iterator[HttpReceiver]:
    with ThreadedHttpReceiver() as rx:
        yield rx


@pytest.fixture
def workspace(tmp_path: Path, slack: HttpReceiver) -> Iterator[Workspace]:
    ws = create_workspace(tmp_path / "ws", api_port=free_port(), web_port=free_port())
    ws.config_path.write_text(ws.config_path.read_text() + f"""\
notifications:
  channels:
    deploys: {{type: slack, webhook: "{slack.url}/hook"}}
  routes:
    - {{events: ["*"], to: [deploys]}}
""")
    try:
        yield ws
    finally:
        agent_dir = ws.root / ".shipyard" / "agent"
        if agent_dir.is_dir() and agent_status(agent_dir):
            stop_agent(agent_dir, stop_instances=True, timeout=30)


def test_the_cli_leaves_at_the_drain_deadline_and_the_worker_sends_the_rest(workspace: Workspace,
                                                                              slack: HttpReceiver) -> None:
    ws = workspace
    env = cli_env()
    res = run_cli(ws.root, "deploy", "api", "--env", "stg", env=env, timeout=120)
    exited = time.time()
    assert res.returncode == 0, str(res)
    with Store.open(f"sqlite:///{ws.root / '.shipyard' / 'state.db'}") as store, store.session() as s:
        (dep,) = list_deployments(s, service="api", env="stg")
        assert dep.finished_at is not None
        finished = dep.finished_at.timestamp()
        rows = ob.all_rows(s)
    # Slack's pacing sends one message a second, so the drain can send at most DRAIN + 1 of them.
    assert len(rows) >= DRAIN + 3, "the deploy should record more events than 5 s of Slack pacing can send"
    after = exited - finished
    assert after <= DRAIN + MARGIN, f"the CLI left {after:.1f}s after the deployment finished"
    sent_by_deploy = len(slack.requests)
    assert 1 <= sent_by_deploy < len(rows)
    pending = [r for r in rows if r.state == ob.PENDING]
    assert len(pending) == len(rows) - sent_by_deploy

    res = run_cli(ws.root, "notify", "worker", "--drain", "--timeout", "60", env=env, timeout=120)
    assert res.returncode == 0, str(res)
    assert len(set(slack.keys())) == len(rows)                            # every event arrived
    assert slack.duplicates() == len(slack.requests) - len(rows) <= 1    # at most the one cut off in flight
