"""Instances on a fleet of hosts: each host's own shipyard agent, reached through its socket forwarded over SSH.

The controller builds a release once; `ship` copies it to every host in parallel before anything starts.
Each instance is placed by this target, not by the engine: on the first host, in the configured order,
that runs fewer than per_host instances of that revision and has a free port slot. `keep_serving` keeps the old
instances of the hosts *last* in that order, so the count-based planner's batches are whole hosts and go
web-1 first (see strategies/hosts.py): a batch's new instances land on the very hosts whose old ones leave.

An instance is known by the host it runs on (label `host`) and reached at the host's address and its port;
the app must listen on that address (e.g. `--bind 0.0.0.0:{port}`), since the router and health checks
come from outside the host.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, TypeVar

from shipyard.agent.client import AgentClient
from shipyard.domain.types import Instance
from shipyard.errors import AgentUnavailableError, ShipyardError, TargetError
from shipyard.targets.base import LaunchSpec
from shipyard.targets.local import to_instance

T = TypeVar("T")
LIVE = ("starting", "running", "backoff")


class HostAgents(Protocol):
    async def client(self, host: str) -> AgentClient:
        """The agent of `host`, through its socket forwarded over the host's SSH connection."""
        ...

    async def ensure(self, host: str) -> AgentClient:
        """The agent of `host`, started there first (its keeper and agent) if it is not running."""
        ...


class ReleaseShipper(Protocol):
    async def __call__(self, hosts: Sequence[str], release: Path, service: str, keep: int,
                       in_use: set[str]) -> dict[str, Any]:
        """Ship the built `release` dir to `hosts` (skipping those that have it); per host what happened."""
        ...


@dataclass(frozen=True)
class FleetHost:
    name: str
    address: str
    release_dir: str           # the host's shipyard root (releases/ and the agent live under it)


class SshTarget:
    def __init__(self, agents: HostAgents, hosts: Sequence[FleetHost], service: str, env: str, *,
                 per_host: int, port: int, mode: str = "surge", ship: ReleaseShipper | None = None) -> None:
        self.agents, self.service, self.env = agents, service, env
        self.all_hosts = list(hosts)
        self.hosts = list(hosts)                 # the hosts this run deploys to (unreachable ones skipped)
        self.per_host, self.port, self.mode = per_host, port, mode
        self._ship = ship
        self.in_place = mode == "in_place"
        self.capabilities = frozenset({"restart", "hosts", "in_place"} if self.in_place
                                      else {"restart", "hosts", "keep_warm"})
        self.slots = per_host * (1 if self.in_place else 3)
        # A host lost mid-run (its agent unreachable): left out from then on. `tolerate(hosts, reachable)`
        # says whether the run may carry on without it (minimum_healthy_hosts); `on_lost` records it.
        self.lost: dict[str, str] = {}
        self.lost_ids: set[str] = set()
        self.tolerate: Callable[[int, int], bool] = lambda hosts, reachable: False
        self.on_lost: Callable[[str, str, bool], None] = lambda host, why, carry_on: None
        self._seen: dict[str, list[str]] = {}    # instance ids last listed per host

    # ---- which hosts --------------------------------------------------------------------------------
    def host(self, name: str) -> FleetHost:
        for h in self.all_hosts:
            if h.name == name:
                return h
        raise TargetError(f"{self.service}/{self.env}: instance on unknown host {name!r}")

    @property
    def desired(self) -> int:
        return len(self.hosts) * self.per_host

    async def probe(self) -> dict[str, str | None]:
        """Each host's agent: None when it answers, else why not (one line). An agent that does not answer
        on a reachable host (its keeper died with it, the host rebooted without systemd) is started, as the
        local target starts the local agent."""
        async def one(h: FleetHost) -> str | None:
            try:
                agent = await self.agents.client(h.name)
                await agent.status()
            except AgentUnavailableError as exc:
                try:
                    await (await self.agents.ensure(h.name)).status()
                except ShipyardError as again:
                    return f"{exc}; starting it failed: {again}"
            except ShipyardError as exc:
                return str(exc)
            return None
        results = await asyncio.gather(*(one(h) for h in self.all_hosts))
        return {h.name: r for h, r in zip(self.all_hosts, results, strict=True)}

    def watch(self, tolerate: Callable[[int, int], bool], on_lost: Callable[[str, str, bool], None]) -> None:
        self.tolerate, self.on_lost = tolerate, on_lost

    def skip(self, names: Iterable[str]) -> None:
        gone = set(names)
        self.hosts = [h for h in self.all_hosts if h.name not in gone]

    # ---- releases ------------------------------------------------------------------------------------
    def remote_release(self, host: FleetHost, release: Path) -> str:
        return str(PurePosixPath(host.release_dir) / "releases" / self.service / release.name)

    async def ship(self, release: Path, keep: int, in_use: set[str]) -> dict[str, Any]:
        if self._ship is None:
            raise TargetError(f"{self.service}/{self.env}: no way to ship releases to the hosts")
        return await self._ship([h.name for h in self.hosts], release, self.service, keep, in_use)

    # ---- Target --------------------------------------------------------------------------------------
    async def _each(self, hosts: Iterable[FleetHost], work: Callable[[FleetHost], Awaitable[T]]) -> list[T]:
        return list(await asyncio.gather(*(work(h) for h in hosts)))

    async def _on_host(self, h: FleetHost) -> list[Instance]:
        agent = await self.agents.client(h.name)
        recs = await agent.list_instances(service=self.service, env=self.env)
        out = []
        for rec in recs:
            if rec.get("state") in ("stopped", "exited"):
                continue
            inst = to_instance({**rec, "address": f"{h.address}:{rec['port']}",
                                "labels": {**(rec.get("labels") or {}), "host": h.name}})
            out.append((float(rec.get("started_at") or 0), inst))
        return [i for _, i in sorted(out, key=lambda pair: pair[0])]

    async def instances(self) -> list[Instance]:
        """Every live instance on the hosts, host by host in the configured order. A host whose agent
        cannot be reached is lost for the rest of the run (its instances with it); the first time, that
        is a TargetError unless `tolerate` lets the run carry on without it."""
        async def listed(h: FleetHost) -> list[Instance] | ShipyardError:
            try:
                found = await self._on_host(h)
            except ShipyardError as exc:
                return exc
            self._seen[h.name] = [i.id for i in found]
            return found
        results = await self._each(self.hosts, listed)
        failed = {h.name: str(r) for h, r in zip(self.hosts, results, strict=True) if isinstance(r, ShipyardError)}
        if failed:
            self._lose(failed)
        return [i for r in results if not isinstance(r, ShipyardError) for i in r]

    def _lose(self, failed: dict[str, str]) -> None:
        """Hosts whose agent could not be reached: left out from now on when `tolerate` says the run may
        carry on without them, else a TargetError (and they are tried again next time)."""
        remaining = [h for h in self.hosts if h.name not in failed]
        carry_on = bool(remaining) and self.tolerate(len(self.all_hosts), len(remaining))
        for name, why in failed.items():
            self.lost[name] = why
            self.lost_ids.update(self._seen.get(name, []))
            self.on_lost(name, why, carry_on)
        if carry_on:
            self.hosts = remaining
            return
        listed = "; ".join(f"{n}: {w}" for n, w in failed.items())
        raise TargetError(f"lost {len(failed)} host{'s' if len(failed) > 1 else ''} ({listed})")

    def keep_serving(self, olds: list[Instance], count: int) -> list[Instance]:
        order = {h.name: n for n, h in enumerate(self.all_hosts)}
        ranked = sorted(olds, key=lambda i: -order.get(i.labels.get("host", ""), -1))
        return [i for i in olds if i in ranked[:count]] if count > 0 else []

    def _place(self, live: list[Instance], revision: str, count: int) -> list[tuple[FleetHost, int]]:
        """(host, port) for `count` new instances of `revision` (pure): the first host in order that runs
        fewer than per_host of it and has a free port slot, filled up before the next (a batch is whole
        hosts; a rollback refills exactly the hosts that lost theirs)."""
        used = {h.name: {int(i.address.rsplit(":", 1)[1]) for i in live if i.labels.get("host") == h.name}
                for h in self.hosts}
        have = {h.name: sum(1 for i in live if i.labels.get("host") == h.name and i.revision == revision)
                for h in self.hosts}
        picks: list[tuple[FleetHost, int]] = []
        for _ in range(count):
            host = next((h for h in self.hosts if have[h.name] < self.per_host
                         and any(p not in used[h.name] for p in self._ports())), None)
            if host is None:
                raise TargetError(self._no_room(live, revision))
            port = next(p for p in self._ports() if p not in used[host.name])
            used[host.name].add(port)
            have[host.name] += 1
            picks.append((host, port))
        return picks

    def _ports(self) -> range:
        return range(self.port, self.port + self.slots)

    def _no_room(self, live: list[Instance], revision: str) -> str:
        if self.in_place:
            return (f"{self.service}/{self.env}: no free port in {self.port}-{self.port + self.slots - 1} on any "
                    f"host without {revision[:8]} (in_place: the old instance must stop first)")
        return (f"{self.service}/{self.env}: every host already runs {self.per_host} instance(s) of "
                f"{revision[:8]} or has no free port in {self.port}-{self.port + self.slots - 1}")

    async def start(self, spec: LaunchSpec, count: int) -> list[Instance]:
        picks = self._place(await self.instances(), spec.revision, count)
        results = await asyncio.gather(*(self._start_one(spec, h, p) for h, p in picks), return_exceptions=True)
        failed = {h.name: str(r) for (h, _), r in zip(picks, results, strict=True) if isinstance(r, ShipyardError)}
        if failed:
            self._lose(failed)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, ShipyardError):
                raise r
        return [r for r in results if isinstance(r, Instance)]

    async def _start_one(self, spec: LaunchSpec, host: FleetHost, port: int) -> Instance:
        agent = await self.agents.client(host.name)
        remote = self.remote_release(host, spec.cwd)
        local = str(spec.cwd)
        argv = [a.replace(local, remote) for a in spec.argv_for(port)]
        environ = {k: v.replace(local, remote) for k, v in spec.environ.items()}
        rec = await agent.start_instance(
            service=spec.service, env=spec.env, revision=spec.revision, deployment=spec.deployment,
            cwd=remote, argv=argv, environ=environ, port=port, stop_timeout=spec.stop_timeout,
            labels={"host": host.name, "release": spec.cwd.name})
        return to_instance({**rec, "address": f"{host.address}:{port}",
                            "labels": {**(rec.get("labels") or {}), "host": host.name}})

    def _by_host(self, instances: list[Instance]) -> dict[str, list[Instance]]:
        groups: dict[str, list[Instance]] = {}
        for inst in instances:
            groups.setdefault(inst.labels.get("host", ""), []).append(inst)
        return groups

    async def stop(self, instances: list[Instance], timeout: float) -> None:
        async def on(name: str, group: list[Instance]) -> None:
            agent = await self.agents.client(self.host(name).name)
            await asyncio.gather(*(agent.stop_instance(i.id, timeout=timeout) for i in group))
        await asyncio.gather(*(on(n, g) for n, g in self._by_host(instances).items()))

    async def keep_warm(self, instances: list[Instance], until: float | None) -> None:
        async def on(name: str, group: list[Instance]) -> None:
            agent = await self.agents.client(self.host(name).name)
            await asyncio.gather(*(agent.expire_instance(i.id, until) for i in group))
        await asyncio.gather(*(on(n, g) for n, g in self._by_host(instances).items()))
