"""Fixtures of the unit tests: the engine's world (see engine_env)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_env import make_env, make_repo

from shipyard.engine import deployer


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


@pytest.fixture
def env(tmp_path: Path, repo: Path) -> Iterator[deployer.Environment]:
    e = make_env(tmp_path, repo)
    yield e
    e.store.close()
