"""A host's agent after `hosts setup`, driven through its unix socket forwarded over SSH: an app started and
reached on the host's address with nothing else listening on the network, the keeper bringing a SIGKILLed
agent back, a fully stopped host started again by the deploy's probe, and setup idempotent and naming a
host it could not reach."""

from __future__ import annotations

import contextlib
import time
import urllib.request
from pathlib import Path

import pytest

from nethosts import HostFactory, TestHost, ssh_pool
from shipyard.errors import AgentError, AgentUnavailableError, ShipyardError
from shipyard.hosts.agent import RemoteAgents
from shipyard.hosts.runtime import build_runtime
from shipyard.hosts.setup import SetupResult, hostctl, setup_hosts
from shipyard.targets.ssh import FleetHost, SshTarget
from shipyard.testing.wait import wait_until_async

pytestmark = pytest.mark.nethosts
APP_PORT = 18080
RUNTIME_CACHE = Path("/tmp/shy-contract-runtime")      # shared with the contract suite: built once


def listening(host: TestHost) -> set[str]:
    return {line.split()[3] for line in host.run(["ss", "-ltnH"]).stdout.splitlines() if line.strip()}


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


async def test_agent_through_the_forwarded_socket(nethosts: HostFactory, tmp_path: Path) -> None:
    host = nethosts.add("web-1")
    runtime = build_runtime(RUNTIME_CACHE)
    async with ssh_pool(host, tmp_path / "known_hosts") as pool:
        first = (await setup_hosts(pool, ["web-1"], runtime))["web-1"]
        assert isinstance(first, SetupResult) and first.installed and first.agent_pid, first
        again = (await setup_hosts(pool, ["web-1"], runtime))["web-1"]
        assert isinstance(again, SetupResult) and not again.installed and again.agent_pid == first.agent_pid

        agents = RemoteAgents(pool, timeout=10.0)
        try:
            client = await agents.client("web-1")
            status = await client.status()
            assert status["version"] == runtime.version
            rec = await client.start_instance(
                service="web", env="prod", revision="r1", cwd="/srv",
                argv=["/usr/bin/python3", "-m", "http.server", "--bind", host.address, str(APP_PORT)],
                port=APP_PORT)
            url = f"http://{host.address}:{APP_PORT}/"
            await wait_until_async(lambda: answers(url), 20, "the app on the host answers the controller")
            # Only sshd and the app listen on TCP: the agent, keeper and routers are unix sockets.
            assert listening(host) == {f"{host.address}:22", f"{host.address}:{APP_PORT}"}

            # The keeper restarts a SIGKILLed agent, which adopts the app; the same client reaches it.
            host.run(["kill", "-KILL", str(status["pid"])])

            async def back() -> bool:
                with contextlib.suppress(AgentError):
                    return bool((await client.status())["pid"] != status["pid"])
                return False
            await wait_until_async(back, 30, "the agent back after SIGKILL")
            assert [i["id"] for i in await client.list_instances(service="web")] == [rec["id"]]
            assert answers(url)

            # Everything stopped (instances, agent, keeper), as after a reboot without systemd: the agent is
            # named as not answering, and a deploy's probe starts it again.
            assert (await hostctl(pool, "web-1", "stop"))["status"]["stopped"] is True
            assert not answers(url)
            with pytest.raises(AgentUnavailableError, match="web-1"):
                await client.status()
            target = SshTarget(agents, [FleetHost("web-1", host.address, "/srv/shipyard")], "web", "prod",
                               per_host=1, port=APP_PORT)
            assert await target.probe() == {"web-1": None}
            assert (await (await agents.client("web-1")).status())["pid"] not in (status["pid"], None)
        finally:
            await agents.aclose()


async def test_setup_names_the_host_it_cannot_reach(nethosts: HostFactory, tmp_path: Path) -> None:
    hosts = [nethosts.add("web-1"), nethosts.add("web-2")]
    runtime = build_runtime(RUNTIME_CACHE)
    hosts[1].cut()
    try:
        async with ssh_pool(hosts, tmp_path / "known_hosts") as pool:
            started = time.monotonic()
            results = await setup_hosts(pool, ["web-1", "web-2"], runtime)
            assert time.monotonic() - started < 60
    finally:
        hosts[1].restore()
    assert isinstance(results["web-1"], SetupResult), results
    failed = results["web-2"]
    assert isinstance(failed, ShipyardError) and "web-2" in str(failed), failed
    # A fresh host without the runtime: the probe's attempt to start the agent says what is wrong.
    async with ssh_pool(hosts, tmp_path / "known_hosts2") as pool:
        agents = RemoteAgents(pool, timeout=5.0)
        try:
            target = SshTarget(agents, [FleetHost(h.name, h.address, "/srv/shipyard") for h in hosts], "web",
                               "prod", per_host=1, port=APP_PORT)
            probed = await target.probe()
        finally:
            await agents.aclose()
    assert probed["web-1"] is None
    assert probed["web-2"] and "web-2" in probed["web-2"] and "hosts setup web-2" in probed["web-2"], probed
