"""Meta-tests: every registered target and router kind has a harness here, so the contract suite runs it
(a kind a plugin adds must come with one), and every harness is for a kind that exists."""

from __future__ import annotations

from shipyard import plugins

from .harnesses import ROUTERS, TARGETS
from .release_harnesses import RELEASES


def test_every_registered_router_kind_runs_the_contract() -> None:
    assert set(plugins.kinds("routers")) == set(ROUTERS), "tests/contract/harnesses.py: ROUTERS"


def test_every_registered_target_kind_runs_the_contract() -> None:
    kinds = plugins.kinds("targets")
    assert {n for n, k in kinds.items() if not k.activates_releases} == set(TARGETS), \
        "tests/contract/harnesses.py: TARGETS"
    assert {n for n, k in kinds.items() if k.activates_releases} == set(RELEASES), \
        "tests/contract/release_harnesses.py: RELEASES"
