"""auto_deploy after a promotion, lightly: the changed service goes through the real engine (store, git
export, lease, strategy) to FakeTarget/FakeRouter instead of the host agent, which its own tests cover."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fleet_helpers import Driver, make_fleet

from shipyard.config import load_config
from shipyard.config.checks import ExecCheck
from shipyard.domain.deployment import DeployState
from shipyard.engine import deployer
from shipyard.engine.settings import service_settings
from shipyard.fleet.autodeploy import deploy_changed, services_to_deploy
from shipyard.fleet.execute import execute
from shipyard.fleet.promote import prepare_promotion
from shipyard.releases.store import ReleaseStore
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

    def environment(service: str) -> deployer.Environment:
        settings = service_settings(config, fleet.root, service, "stg")
        check = ExecCheck(type="exec", command="true", interval=0.05, timeout=2, healthy_threshold=1,
                          unhealthy_threshold=1, start_period=0, deadline=10)
        settings = replace(settings, strategy=AllAtOnce(), health=check, health_wait=10, bake=0)
        return deployer.Environment(settings=settings, store=d.store, target=FakeTarget(service, "stg"),
                                    router=FakeRouter(), releases=ReleaseStore(fleet.root / ".shipyard" / "rel"),
                                    actor="tester")

    results = await deploy_changed(services, environment)
    assert [(r["service"], r["state"], r["revision"]) for r in results] == [
        ("api", str(DeployState.SUCCEEDED), fleet.sha("svc0", "stg"))]
    d.store.close()

