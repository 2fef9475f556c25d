"""Frozen environments, fleet side: after a rollback, the bad commits must not come back by a promotion.

A rollback records a freeze on its environment; `shipyard promote` into it is refused with a line naming
the rollback, until someone runs `shipyard unfreeze --env ENV` (deploys, rollbacks and auto-deploys of its
services are refused by the engine, see `shipyard.engine.freeze`). The config's
`environments.ENV.frozen: true` freezes too; that one is lifted by editing the config, on purpose: a freeze
written down in the repo is a team decision, not something one command should undo.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shipyard.engine.freeze import current_freeze
from shipyard.errors import EnvironmentFrozen, UsageError
from shipyard.store import Store
from shipyard.store import promotions as pq


def frozen_reason(config: Any, store: Store, env: str) -> str | None:
    """Why `env` is frozen (one line), or None when promotions into it are allowed."""
    found = current_freeze(store, env, in_config=config.environment(env).frozen)
    return found.reason if found else None


def check_not_frozen(config: Any, store: Store, envs: Iterable[str]) -> None:
    """Raise EnvironmentFrozen for the first frozen env among `envs`."""
    for env in envs:
        reason = frozen_reason(config, store, env)
        if reason:
            raise EnvironmentFrozen(reason)


def freeze(store: Store, env: str, *, reason: str, actor: str, promotion_id: str | None) -> None:
    with store.session() as s:
        pq.freeze_env(s, env, reason=reason, actor=actor, promotion_id=promotion_id)


def unfreeze(config: Any, store: Store, env: str, *, actor: str) -> list[str]:
    """Lift the recorded freezes of `env`; returns the promotion ids (or reasons) that had frozen it."""
    if config.environment(env).frozen:
        raise UsageError(f"{env} is frozen in shipyard.yaml (environments.{env}.frozen: true): "
                         "edit the config to lift it")
    with store.session() as s:
        return [row.promotion_id or row.reason for row in pq.unfreeze_env(s, env, actor=actor)]
