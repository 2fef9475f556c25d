"""The SecretProvider protocol every store of secret values implements, one instance per environment.

Kept to four calls so a new backend (Vault, GCP, a plugin) is a small class: `get` is batched because
remote stores charge per round trip, and absent names are simply missing from its answer so the resolver
can report every missing name at once instead of failing on the first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from shipyard.errors import UsageError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@runtime_checkable
class SecretProvider(Protocol):
    """Secret values of one environment in one backend."""

    label: str          # registry name shown as the source: "local", "env", "aws-ssm", ...
    writable: bool

    def get(self, names: Iterable[str]) -> dict[str, str]:
        """Values of those `names` the backend has (absent names are left out, never "")."""
        ...

    def set(self, name: str, value: str) -> None:
        """Create or replace one value."""
        ...

    def list(self) -> list[str]:
        """Every name stored for this environment, sorted."""
        ...

    def delete(self, name: str) -> bool:
        """Remove one value; False when it was not there."""
        ...


def check_name(name: str) -> str:
    """Secret names become environment variable names, so they follow the same rule."""
    if not _NAME.fullmatch(name):
        raise UsageError(f"invalid secret name {name!r}: use letters, digits and '_', not starting with a digit")
    return name
