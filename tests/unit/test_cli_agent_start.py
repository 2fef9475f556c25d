"""`Project.agent_starting()`: the agent comes up while the command does other work (a first deploy on a
host used to wait ~1 s for the keeper and the agent, and only then create its state database), and the
command never leaves the block before that start has ended, nor loses its failure."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from shipyard.agent import daemon
from shipyard.cli.project import Project
from shipyard.config.model import Config
from shipyard.errors import AgentError, StoreError

pytestmark = pytest.mark.timeout(30)


def _project(tmp_path: Path) -> Project:
    config = Config.model_validate({"project": "p", "environments": {"dev": {"branch": "dev"}},
                                    "agent": {"router_workers": 3}})
    return Project(config_path=tmp_path / "shipyard.yaml", config=config)


def test_the_block_runs_while_the_agent_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    block_running = threading.Event()
    calls: list[tuple[Path, Any, Any]] = []

    def start(state_dir: Path, *, config: Path | None = None, router_workers: str | None = None) -> None:
        calls.append((state_dir, config, router_workers))
        assert block_running.wait(10), "the agent start waited for the block instead of running beside it"
        time.sleep(0.2)                         # still starting when the block is done

    monkeypatch.setattr(daemon, "ensure_agent", start)
    project = _project(tmp_path)
    with project.agent_starting():
        block_running.set()
        left_block = time.monotonic()
    assert time.monotonic() - left_block >= 0.15, "the block was left before the agent start had ended"
    assert calls == [(tmp_path / ".shipyard" / "agent", tmp_path / "shipyard.yaml", "3")]


def test_a_failed_start_is_raised_after_the_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def start(state_dir: Path, *, config: Path | None = None, router_workers: str | None = None) -> None:
        raise AgentError("the agent did not answer within 10s")

    monkeypatch.setattr(daemon, "ensure_agent", start)
    ran = []
    with pytest.raises(AgentError, match="did not answer"), _project(tmp_path).agent_starting():
        ran.append(True)
    assert ran == [True]


def test_an_error_of_the_block_wins_and_still_waits_for_the_start(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ended = threading.Event()

    def start(state_dir: Path, *, config: Path | None = None, router_workers: str | None = None) -> None:
        time.sleep(0.2)
        ended.set()
        raise AgentError("also failed")

    monkeypatch.setattr(daemon, "ensure_agent", start)
    with pytest.raises(StoreError, match="damaged"), _project(tmp_path).agent_starting():
        raise StoreError("state database is damaged")
    assert ended.is_set(), "the command left while the keeper was still being started"
