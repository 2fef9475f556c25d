"""Fixtures of the contract suite: `router_case` and `target_case` are parametrized over every kind in the
plugin registry (shipyard.plugins), each built by its harness (harnesses.py), and `release_case` over the
release targets (release_harnesses.py); `backends` are three real HTTP backends on loopback. A registered
kind without a harness fails here rather than being skipped."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard import plugins

from .harnesses import APP, ROUTERS, TARGETS, Backend, RouterCase, TargetCase, close_contract_hosts, start_backend
from .release_harnesses import RELEASES, ReleaseCase

MARKS: dict[str, Any] = {"haproxy": pytest.mark.haproxy,      # kind -> the marker of the server it needs
                         "ssh": pytest.mark.nethosts, "nginx": pytest.mark.nginx}


@pytest.fixture(scope="session", autouse=True)
def _contract_hosts() -> Iterator[None]:
    """The ssh harness's namespaced host lives for the session; removed at its end."""
    yield
    close_contract_hosts()


def _params(group: plugins.Group, releases: bool = False) -> list[Any]:
    """The kinds of `group`; for targets, those with instances or (`releases`) the release targets."""
    kinds = sorted(plugins.kinds(group).items())
    return [pytest.param(name, id=name, marks=MARKS.get(name, ())) for name, kind in kinds
            if group != "targets" or kind.activates_releases == releases]


@pytest.fixture
def base() -> Iterator[Path]:
    # Unix socket paths are limited to 108 bytes: a short private dir in /tmp, not tmp_path.
    path = Path(tempfile.mkdtemp(prefix="syc-", dir="/tmp"))
    (path / "app.py").write_text(APP)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=_params("routers"))
async def router_case(request: pytest.FixtureRequest, base: Path) -> AsyncIterator[RouterCase]:
    harness = ROUTERS.get(request.param)
    if harness is None:
        pytest.fail(f"router kind {request.param!r} has no contract harness (add one to tests/contract/harnesses.py)")
    async with harness(base) as case:
        yield case


@pytest.fixture(params=_params("targets"))
async def target_case(request: pytest.FixtureRequest, base: Path) -> AsyncIterator[TargetCase]:
    harness = TARGETS.get(request.param)
    if harness is None:
        pytest.fail(f"target kind {request.param!r} has no contract harness (add one to tests/contract/harnesses.py)")
    async with harness(base) as case:
        yield case


@pytest.fixture(params=_params("targets", releases=True))
async def release_case(request: pytest.FixtureRequest, base: Path) -> AsyncIterator[ReleaseCase]:
    harness = RELEASES.get(request.param)
    if harness is None:
        pytest.fail(f"release target kind {request.param!r} has no contract harness (add one to "
                    "tests/contract/release_harnesses.py)")
    async with harness(base) as case:
        yield case


@pytest.fixture
async def backends() -> AsyncIterator[list[Backend]]:
    started = [await start_backend(name) for name in ("a", "b", "c")]
    yield started
    for b in started:
        for gate in b.gates.values():
            gate.set()
        await b.runner.cleanup()
