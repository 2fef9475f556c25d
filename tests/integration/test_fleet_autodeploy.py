"""auto_deploy after a promotion, lightly: the changed service goes through the real engine (store, git
export, lease, strategy) to FakeTarget/FakeRouter instead of the host agent, which its own tests cover.
After a tag rollback the environment is frozen: the rollback's own auto-deploy passes that freeze (it
deploys the rolled-back code), nothing else does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from fleet_helpers import Driver, make_fleet

from shipyard.config import load_config
from shipyard.config.checks import ExecCheck
from shipyard.domain.deployment import DeployState
from shipyard.engine import deployer
from shipyard.engine.freeze import FreezeOverride
from shipyard.engine.settings import service_settings
from shipyard.fleet.autodeploy import deploy_changed, own_freeze, services_to_deploy
from shipyard.fleet.execute import execute
from shipyard.fleet.promote import prepare_promotion
from shipyard.fleet.rollback import prepare_rollback
from shipyard.releases.store import ReleaseStore
from shipyard.store import events as eq
from shipyard.store import git_triggers as gq
from shipyard.strategies import AllAtOnce
from shipyard.testing import FakeRouter, FakeTarget

SERVICES = """\
services:
  api:
    repo: svc0
    run: python app.py
    health: {type: exec, command: "true", interval: 0.05s, healthy_threshold: 1, start_period: 0s}
    deploy: {target: {type: local, instances: 1}, router: {type: builtin, listen: "127.0.0.1:1"}}
  web:
    repo: svc1
    run: python app.py
"""


async def test_changed_services_are_deployed_at_the_new_commit(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path / "f", 2)
    fleet.write_config(extra=SERVICES)
    fleet.commit("svc0", "dev", {"app.py": "print('v2')\n"})
    d = Driver(fleet)
    outcome = await execute(d.ctx(), await prepare_promotion(d.ctx(), "dev", "stg"))
    config = load_config(fleet.config_path)
    services = services_to_deploy(config, outcome.changed["stg"])
    assert services == [("api", fleet.sha("svc0", "stg"))], "web's repo did not move"

    results = await deploy_changed(services, _environments(fleet.root, d))
    assert [(r["service"], r["state"], r["revision"]) for r in results] == [
        ("api", str(DeployState.SUCCEEDED), fleet.sha("svc0", "stg"))]
    # Marked handled for the GitOps watcher (which would see the pushed branch and deploy it again), and
    # a second request for the sha that serves is answered by that deployment, not run again.
    with d.store.session() as s:
        trigger = gq.get(s, "api", "stg", fleet.sha("svc0", "stg"))
        assert trigger is not None and (trigger.source, trigger.repo, trigger.branch) == ("promote", "svc0", "stg")
        assert trigger.deployment_id == results[0]["id"]
    again = await deploy_changed(services, _environments(fleet.root, d))
    assert [(r["id"], r["reason"]) for r in again] == [(results[0]["id"], "already deployed by tester")]
    d.store.close()


def _environments(root: Path, d: Driver) -> Callable[[str], deployer.Environment]:
    config = load_config(root / "shipyard.yaml")

    def environment(service: str) -> deployer.Environment:
        settings = service_settings(config, root, service, "stg")
        check = ExecCheck(type="exec", command="true", interval=0.05, timeout=2, healthy_threshold=1,
                          unhealthy_threshold=1, start_period=0, deadline=10)
        settings = replace(settings, strategy=AllAtOnce(), health=check, health_wait=10, bake=0)
        return deployer.Environment(settings=settings, store=d.store, target=FakeTarget(service, "stg"),
                                    router=FakeRouter(), releases=ReleaseStore(root / ".shipyard" / "rel"),
                                    actor="tester")
    return environment


async def test_a_tag_rollback_deploys_through_its_own_freeze_only(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path / "f", 2)
    fleet.write_config(extra=SERVICES)
    d = Driver(fleet)
    fleet.commit("svc0", "dev", {"app.py": "print('good')\n"})
    good = (await execute(d.ctx(), await prepare_promotion(d.ctx(), "dev", "stg"))).repos[0].tag or ""
    fleet.commit("svc0", "dev", {"app.py": "print('bad')\n"})
    await execute(d.ctx(), await prepare_promotion(d.ctx(), "dev", "stg"))
    rollback = await execute(d.ctx(), await prepare_rollback(d.ctx(), "stg", good))
    assert rollback.state == "completed"
    services = services_to_deploy(load_config(fleet.config_path), rollback.changed["stg"])
    environment = _environments(fleet.root, d)

    refused = await deploy_changed(services, environment)                       # the freeze holds...
    assert [(r["state"], r["id"]) for r in refused] == [("failed", None)]
    assert f"stg is frozen by {rollback.id}" in refused[0]["reason"]
    other = await deploy_changed(services, environment, FreezeOverride("x", only_freeze_by="rollback-other"))
    assert other[0]["state"] == "failed"
    done = await deploy_changed(services, environment, own_freeze("rollback", rollback.id, "stg"))
    assert [(r["state"], r["revision"]) for r in done] == [(str(DeployState.SUCCEEDED), fleet.sha("svc0", "stg"))]
    assert own_freeze("promote", "promote-x", "stg") is None
    with d.store.session() as s:
        [over] = eq.list_events(s, kind="deploy.freeze_overridden")
        assert over.deployment_id == done[0]["id"] and rollback.id in over.data["reason"]
        assert len(eq.list_events(s, kind="deploy.refused")) == 2
    d.store.close()

