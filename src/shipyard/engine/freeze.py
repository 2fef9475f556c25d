"""Frozen environments, as every request that changes what serves sees them.

An environment is frozen by a tag rollback (`shipyard rollback --env E --to TAG`, recorded in env_freezes
until `shipyard unfreeze`) or by `environments.E.frozen: true` in shipyard.yaml. While frozen, promotions
into it are refused (fleet) and so are deploys, rollbacks and auto-deploys of its services (engine):
otherwise the next deploy of the env's branch, or a rollback to the previous release, would bring back
the very commits the rollback took out. An explicit override (`--override-freeze --reason ...`) lets one
request through and is recorded as a `deploy.freeze_overridden` event with who and why.

This module is below both the engine and fleet; it reads the store and knows nothing of the config tree.
"""

from __future__ import annotations

from dataclasses import dataclass

from shipyard.errors import EnvironmentFrozen
from shipyard.store import Store
from shipyard.store import promotions as pq


@dataclass(frozen=True)
class Freeze:
    """Why `env` is frozen: the one line shown to people, and what froze it."""

    env: str
    reason: str
    promotion_id: str | None = None      # the tag rollback that froze it (None: the config, or a bare freeze)
    in_config: bool = False


@dataclass(frozen=True)
class FreezeOverride:
    """Let one request through a freeze: who asked (the request's actor) and why, both recorded.

    `only_freeze_by`: allow only the freeze made by that promotion (the auto-deploy that follows a tag
    rollback deploys what the rollback pushed; a freeze by anything else still refuses it)."""

    reason: str
    only_freeze_by: str | None = None

    def covers(self, freeze: Freeze) -> bool:
        if self.only_freeze_by is None:
            return True
        return not freeze.in_config and freeze.promotion_id == self.only_freeze_by


def current_freeze(store: Store, env: str, *, in_config: bool) -> Freeze | None:
    """The freeze in force on `env` (the config's first), or None."""
    if in_config:
        return Freeze(env, f"{env} is frozen in shipyard.yaml (environments.{env}.frozen: true); "
                           "edit the config to lift it", in_config=True)
    with store.session(readonly=True) as s:
        row = pq.active_freeze(s, env)
        if row is None:
            return None
        by = f" by {row.promotion_id}" if row.promotion_id else ""
        return Freeze(env, f"{env} is frozen{by} ({row.reason}, {row.frozen_by}); "
                           f"run `shipyard unfreeze --env {env}` once the fix is in", row.promotion_id)


def admit(freeze: Freeze | None, override: FreezeOverride | None, *, what: str) -> Freeze | None:
    """Raise EnvironmentFrozen unless `env` is not frozen or `override` covers the freeze; returns the
    freeze that was overridden (for the caller to record), or None."""
    if freeze is None:
        return None
    if override is None or not override.covers(freeze):
        raise EnvironmentFrozen(f"{what} refused: {freeze.reason} (or pass --override-freeze --reason TEXT)")
    return freeze
