"""Fold the top-level `defaults` block into every service before validation.

Done on plain data (not models) so that a value taken from `defaults` is validated in the service it ends
up in, and so the loader can point an error in such a value back at its line under `defaults`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

Path = tuple[str | int, ...]
MERGED_KEYS = ("env", "requires_env", "health", "hooks", "deploy")


IMPLICIT_TYPES: dict[Path, str] = {("health",): "http", ("deploy", "target"): "local",
                                   ("deploy", "router"): "builtin", ("deploy", "strategy"): "rolling"}
"""The `type` a block has when it does not say (the models fill in the same defaults)."""


def _merge(defaults: dict[str, Any], own: dict[str, Any], dpath: Path, spath: Path,
           copied: Callable[[Path, Path], None]) -> dict[str, Any]:
    result = dict(own)
    for key, value in defaults.items():
        if key not in own:
            result[key] = copy.deepcopy(value)
            copied((*dpath, key), (*spath, key))
            continue
        mine = own[key]
        if isinstance(value, dict) and isinstance(mine, dict):
            implicit = IMPLICIT_TYPES.get((*dpath[1:], key))
            if mine.get("type", implicit) != value.get("type", implicit):
                continue                # another kind of check/strategy: the defaults do not apply
            result[key] = _merge(value, mine, (*dpath, key), (*spath, key), copied)
    return result


def apply_defaults(data: Any, copied: Callable[[Path, Path], None] | None = None) -> Any:
    """Return `data` with `defaults` merged into each service mapping (services' own keys win).

    Idempotent: merging again changes nothing, so the loader and the model may both call it.
    `copied(src, dst)` is told about every value copied from `defaults` (src) into a service (dst).
    """
    if not isinstance(data, dict):
        return data
    defaults, services = data.get("defaults"), data.get("services")
    if not isinstance(defaults, dict) or not isinstance(services, dict):
        return data
    wanted = {key: value for key, value in defaults.items() if key in MERGED_KEYS and value is not None}
    note = copied or (lambda src, dst: None)
    merged = {
        name: _merge(wanted, svc, ("defaults",), ("services", name), note)
        if isinstance(svc, dict) else svc
        for name, svc in services.items()
    }
    return {**data, "services": merged}
