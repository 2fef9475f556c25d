from __future__ import annotations

from datetime import datetime

import pytest

from shipyard.domain.deployment import ALLOWED, DeployState, check_transition, new_deployment_id
from shipyard.errors import InvalidTransition


def test_deployment_ids_name_time_and_revision() -> None:
    assert new_deployment_id(datetime(2026, 11, 22, 3, 15, 2), "a1b2c3d4e5f6") == "deploy-20261122-031502-a1b2c3d4"


@pytest.mark.parametrize("src,dst", [
    ("queued", "in_progress"), ("in_progress", "succeeded"), ("in_progress", "rolling_back"),
    ("rolling_back", "rolled_back"), ("succeeded", "rolling_back"), ("queued", "cancelled"),
    ("in_progress", "failed"), ("rolling_back", "failed")])
def test_allowed_transitions(src: str, dst: str) -> None:
    assert check_transition(src, dst) is DeployState(dst)


@pytest.mark.parametrize("src,dst", [
    ("succeeded", "in_progress"), ("rolled_back", "in_progress"), ("failed", "succeeded"),
    ("queued", "succeeded"), ("cancelled", "queued"), ("rolling_back", "succeeded")])
def test_forbidden_transitions_raise(src: str, dst: str) -> None:
    with pytest.raises(InvalidTransition, match=f"from {src} to {dst}"):
        check_transition(src, dst)


def test_terminal_states_go_nowhere_except_success_to_rollback() -> None:
    for state in DeployState:
        if state.terminal and state is not DeployState.SUCCEEDED:
            assert not ALLOWED[state]
