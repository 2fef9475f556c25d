"""After a promotion into an env with `auto_deploy: true`: deploy the services whose repo moved.

Kept apart from the promotion itself (and skippable with --no-deploy): the promotion is complete and
recorded once the pushes went through; a deploy that fails afterwards is a deployment failure with its own
record and rollback, not a reason to undo the git side.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from shipyard.engine import deployer
from shipyard.engine.freeze import FreezeOverride
from shipyard.errors import ShipyardError
from shipyard.store import git_triggers as gq


def services_to_deploy(config: Any, changed: Mapping[str, str]) -> list[tuple[str, str]]:
    """(service, sha) for every service whose repo is in `changed` (repo -> new sha), in config order."""
    return [(name, changed[svc.repo]) for name, svc in config.services.items() if svc.repo in changed]


def own_freeze(kind: str, promotion_id: str, env: str) -> FreezeOverride | None:
    """A tag rollback freezes its env, then deploys what it pushed: that deploy (and only it) passes the
    freeze this very rollback made; any other freeze (another rollback's, the config's) still refuses it."""
    if kind != "rollback":
        return None
    return FreezeOverride(f"deploys what {promotion_id} pushed (the rollback that froze {env})",
                          only_freeze_by=promotion_id)


def _claim_for_gitops(e: deployer.Environment, sha: str) -> tuple[bool, Any]:
    """Mark (service, env, sha) handled for the GitOps watcher, which would otherwise deploy the pushed
    commit a second time: (whether this made the trigger, the deployment already at `sha` if any: queued,
    running or serving). A tag rollback's older sha may have its trigger from long ago: deployed anyway."""
    s = e.settings
    with e.store.session() as ses:
        won = gq.claim(ses, service=s.service, env=s.env, sha=sha, source="promote", repo=s.source.name,
                       branch=s.branch)
        return won, gq.current_at(ses, s.service, s.env, sha)


async def deploy_changed(services: list[tuple[str, str]], environment: Callable[[str], deployer.Environment],
                         override: FreezeOverride | None = None) -> list[dict[str, Any]]:
    """Deploy each (service, sha) one after the other through the engine; collect, never raise, results.

    A frozen environment refuses each of them (recorded) unless `override` covers its freeze."""
    results: list[dict[str, Any]] = []
    for service, sha in services:
        e = environment(service)
        won, already = _claim_for_gitops(e, sha)
        if already is not None:
            results.append({"service": service, "revision": sha, "id": already.id, "state": already.state,
                            "reason": f"already deployed by {already.actor}"})
            continue
        try:
            outcome = await deployer.deploy(e, sha, override=override)
        except ShipyardError as err:
            results.append({"service": service, "revision": sha, "id": None, "state": "failed", "reason": str(err)})
            continue
        if won:
            with e.store.session() as ses:
                gq.settle(ses, service=service, env=e.settings.env, sha=sha, deployment_id=outcome.deployment_id)
        results.append({"service": service, "revision": sha, "id": outcome.deployment_id,
                        "state": str(outcome.state), "reason": outcome.reason})
    return results
