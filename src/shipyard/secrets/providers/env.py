"""Values from the process environment (what CI systems inject), optionally under a name prefix.

Read-only: shipyard cannot change the environment of the shell or CI job that started it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from shipyard.errors import UsageError
from shipyard.secrets import scrub


class EnvProvider:
    """NAME is read from the variable `<prefix>NAME`."""

    label = "env"
    writable = False

    def __init__(self, prefix: str = "", environ: Mapping[str, str] | None = None) -> None:
        self.prefix = prefix
        scrub.deny_prefix(prefix)
        self.environ = os.environ if environ is None else environ

    def get(self, names: Iterable[str]) -> dict[str, str]:
        found = {n: self.environ[self.prefix + n] for n in names if self.prefix + n in self.environ}
        scrub.deny_name(*(self.prefix + n for n in found))     # a secret's variable never reaches a child
        return found

    def set(self, name: str, value: str) -> None:
        raise UsageError(f"the env provider is read-only: export {self.prefix}{name} in the environment instead")

    def list(self) -> list[str]:
        # Without a prefix every variable would match (PATH, HOME...): only prefixed names are "secrets".
        if not self.prefix:
            return []
        return sorted(k[len(self.prefix):] for k in self.environ if k.startswith(self.prefix) and k != self.prefix)

    def delete(self, name: str) -> bool:
        raise UsageError(f"the env provider is read-only: unset {self.prefix}{name} in the environment instead")
