"""Meta-tests: every registered target and router kind has a harness here, so the contract suite runs it
(a kind a plugin adds must come with one), and every harness is for a kind that exists."""

from __future__ import annotations

from shipyard import plugins

from .harnesses import ROUTERS, TARGETS


def test_every_registered_router_kind_runs_the_contract() -> None:
    assert set(plugins.kinds("routers")) == set(ROUTERS), "tests/contract/harnesses.py: ROUTERS"


def test_every_registered_target_kind_runs_the_contract() -> None:
    assert set(plugins.kinds("targets")) == set(TARGETS), "tests/contract/harnesses.py: TARGETS"
