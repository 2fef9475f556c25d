"""What a test does when a real server it needs (PostgreSQL, HAProxy, sshd, ...) is not on the machine:
skipped on a developer's laptop, a failure under CI=true, where scripts/bootstrap must have installed it."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def missing_server(reason: str) -> NoReturn:
    """Skip the test for `reason`, or fail it under CI (a missing server must never pass as a skip)."""
    if in_ci():
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)
