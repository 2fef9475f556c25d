"""Host batches (CodeDeploy's way) planned as instance budgets, and the ssh target's placement: together
every batch must be whole hosts, web-1 first, within minimum_healthy_hosts."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from shipyard.domain.plan import Drain, RetireOld, Route, StartNew, WaitHealthy
from shipyard.domain.types import Instance
from shipyard.errors import TargetError, UsageError
from shipyard.strategies import HostBatches, HostRolling, PlanInput
from shipyard.targets.ssh import FleetHost, SshTarget


@pytest.mark.parametrize(("batch", "healthy", "hosts", "size"), [
    (None, None, 4, 1), ("one_at_a_time", None, 4, 1), ("half_at_a_time", None, 4, 2),
    ("half_at_a_time", None, 3, 1), ("half_at_a_time", None, 1, 1), ("all_at_once", None, 4, 4),
    (None, 3, 4, 1), (None, 2, 4, 2), (None, "50%", 4, 2), (None, "75%", 4, 1), (None, "0%", 5, 5),
    ("half_at_a_time", 3, 8, 4), ("all_at_once", 6, 8, 2),
])
def test_batch_size(batch: str | None, healthy: int | str | None, hosts: int, size: int) -> None:
    assert HostBatches(batch, healthy).batch_hosts(hosts) == size


@pytest.mark.parametrize(("healthy", "hosts"), [(4, 4), ("100%", 2), (5, 4)])
def test_minimum_healthy_that_leaves_nothing_is_refused(healthy: int | str, hosts: int) -> None:
    with pytest.raises(UsageError, match="leaves none to deploy to"):
        HostBatches(None, healthy).batch_hosts(hosts)


def test_skipping_unreachable_hosts_needs_an_explicit_minimum() -> None:
    assert not HostBatches("one_at_a_time").may_skip(4, 3)        # no minimum given: refuse by name
    assert HostBatches(None, 2).may_skip(4, 3)
    assert not HostBatches(None, 3).may_skip(4, 3)                # 3 must serve: none of 3 left to deploy to
    assert not HostBatches(None, 3).may_skip(4, 2)
    assert HostBatches(None, "25%").may_skip(4, 2)
    assert not HostBatches(None, 0).may_skip(2, 0)                # nothing left to deploy to


def test_surge_plan_one_host_at_a_time() -> None:
    steps = HostRolling(per_host=1, drain_timeout=5).traffic_steps(PlanInput(current=2, desired=2))
    assert steps == [StartNew(1), WaitHealthy(), Route(new=1, old=1), Drain(5), RetireOld(keep=1),
                     StartNew(2), WaitHealthy(), Route(new=2, old=0), Drain(5), RetireOld(keep=0)]


def test_in_place_plan_takes_a_host_out_before_replacing_it() -> None:
    steps = HostRolling(per_host=1, in_place=True, drain_timeout=5).traffic_steps(PlanInput(current=2, desired=2))
    assert steps[:4] == [Route(new=0, old=1), Drain(5), RetireOld(keep=1), StartNew(1)]
    assert steps[-1] == RetireOld(keep=0) or steps[-1] == Route(new=2, old=0)


# ---- the plan played against the target's placement ----------------------------------------------------

def _target(hosts: int, per_host: int, mode: str) -> SshTarget:
    fleet = [FleetHost(f"web-{n + 1}", f"198.18.0.{11 + n}", "/srv/shipyard") for n in range(hosts)]
    return SshTarget(None, fleet, "api", "prod", per_host=per_host, port=8080, mode=mode)  # type: ignore[arg-type]


def _inst(n: int, host: str, address: str, revision: str) -> Instance:
    return Instance(id=f"i{n}", service="api", env="prod", revision=revision, address=address,
                    labels={"host": host})


def play(hosts: int, per_host: int, mode: str, batches: HostBatches) -> list[tuple[set[str], set[str]]]:
    """Run the plan's steps the way engine.run does, against the target's placement; returns, at each
    Route, (hosts serving the new revision, hosts serving the old one)."""
    target = _target(hosts, per_host, mode)
    ids = itertools.count()
    live: list[Instance] = []
    for h in target.hosts:
        for port in range(8080, 8080 + per_host):
            live.append(_inst(next(ids), h.name, f"{h.address}:{port}", "old"))
    olds = list(live)
    news: list[Instance] = []
    routed = {i.address for i in olds}
    seen = []
    plan = HostRolling(per_host=per_host, batches=batches, in_place=mode == "in_place").traffic_steps(
        PlanInput(current=len(olds), desired=target.desired))
    for step in plan:
        if isinstance(step, StartNew):
            for host, port in target._place(live, "new", step.total - len(news)):
                inst = _inst(next(ids), host.name, f"{host.address}:{port}", "new")
                live.append(inst)
                news.append(inst)
        elif isinstance(step, Route):
            kept = target.keep_serving([o for o in olds if o in live], step.old)
            serving = news[: step.new] + kept
            routed = {i.address for i in serving}
            seen.append(({i.labels["host"] for i in news[: step.new]}, {i.labels["host"] for i in kept}))
        elif isinstance(step, RetireOld):
            gone = [o for o in olds if o in live and o.address not in routed]
            live = [i for i in live if i not in gone]     # stopped (in place) or warm: out of the way
            if mode == "surge":
                live += gone                               # warm instances keep their ports
                olds = [o for o in olds if o not in gone]
    assert len(news) == target.desired and {i.labels["host"] for i in news} == {h.name for h in target.hosts}
    return seen


@pytest.mark.parametrize("mode", ["surge", "in_place"])
@pytest.mark.parametrize(("hosts", "per_host"), [(1, 1), (2, 1), (3, 2), (4, 1), (5, 3), (8, 1)])
@pytest.mark.parametrize("batches", [HostBatches(), HostBatches("half_at_a_time"), HostBatches(None, "75%"),
                                     HostBatches("all_at_once")])
def test_every_batch_is_whole_hosts_first_host_first(mode: str, hosts: int, per_host: int,
                                                      batches: HostBatches) -> None:
    try:
        size = batches.batch_hosts(hosts)
    except UsageError:
        assert batches.minimum_healthy is not None and hosts < 4    # 75% of 1-3 hosts keeps them all
        return
    order = [f"web-{n + 1}" for n in range(hosts)]
    for new_hosts, old_hosts in play(hosts, per_host, mode, batches):
        assert not new_hosts & old_hosts, "a host served both revisions: a batch was not whole hosts"
        done = sorted(new_hosts, key=order.index)
        assert done == order[: len(done)], "hosts are replaced in the configured order"
        serving = len(new_hosts | old_hosts)
        assert serving >= hosts - (size if mode == "in_place" else 0) or serving == hosts


def test_in_place_placement_needs_the_old_port_free() -> None:
    target = _target(2, 1, "in_place")
    live = [_inst(0, "web-1", "198.18.0.11:8080", "old"), _inst(1, "web-2", "198.18.0.12:8080", "old")]
    with pytest.raises(TargetError, match="no free port in 8080-8080"):
        target._place(live, "new", 1)
    assert target._place(live[1:], "new", 1) == [(target.hosts[0], 8080)]


def test_surge_uses_the_next_free_port_and_never_more_than_per_host_of_a_revision() -> None:
    target = _target(2, 1, "surge")
    live = [_inst(0, "web-1", "198.18.0.11:8080", "old"), _inst(1, "web-1", "198.18.0.11:8081", "older")]
    assert target._place(live, "new", 2) == [(target.hosts[0], 8082), (target.hosts[1], 8080)]
    with pytest.raises(TargetError, match="every host already runs 1"):
        target._place(live, "new", 3)


def test_release_paths_map_to_the_host() -> None:
    target = _target(1, 1, "surge")
    assert target.remote_release(target.hosts[0], Path("/p/.shipyard/releases/api/abc-123")) == \
        "/srv/shipyard/releases/api/abc-123"


@pytest.mark.parametrize(("value", "parsed"), [(2, 2), ("2", 2), ("75%", "75%"), (" 50 %", "50%"), ("x", None),
                                               ("150%", None)])
def test_minimum_healthy_hosts_config(value: object, parsed: object) -> None:
    from pydantic import ValidationError

    from shipyard.config.deploy import Rolling as RollingConfig

    if parsed is None:
        with pytest.raises(ValidationError, match="minimum_healthy_hosts"):
            RollingConfig(per="host", minimum_healthy_hosts=value)   # type: ignore[arg-type]
    else:
        assert RollingConfig(per="host", minimum_healthy_hosts=value).minimum_healthy_hosts == parsed  # type: ignore[arg-type]
