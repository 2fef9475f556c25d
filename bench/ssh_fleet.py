"""Deploy the example API to a fleet of namespaced hosts over SSH behind a real HAProxy, under steady load.

Real parts throughout: each host is a network namespace with its own address in 198.18.0.0/15, a private
/srv and Debian's sshd (tests/nethosts.py); `shipyard hosts setup` installs the agent on every host; HAProxy
runs on this machine and is driven through its runtime API; an open-loop load generator offers --rps through
HAProxy for the whole of each deploy. Deploys run from the CLI, as a user runs them.

    python bench/ssh_fleet.py --hosts 4 [--rps 200] [--json]

Three deploys: rolling one host at a time, then half at a time, then a release that fails its health check
(rolled back by itself). Then shipping a fresh release archive to one host, to every host at once and to
every host one after another (the hosts share this machine's cores, so `cpu_busy_all_hosts` says how much
of the all-at-once time is their CPU rather than waiting, and `controller_cpu_seconds_all_hosts` what
shipyard's own process spent of it), and the time a host's traffic change takes
through the HAProxy runtime API. Needs root (namespaces).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))          # the namespaced hosts live with the test fixtures

from nethosts import HostFactory, open_pool  # noqa: E402
from shipyard.demo.load import LoadRunner  # noqa: E402
from shipyard.routers.base import WeightedBackend  # noqa: E402
from shipyard.routers.haproxy import HaproxyRouter, UnixSocketChannel  # noqa: E402
from shipyard.testing.cli import run_cli  # noqa: E402
from shipyard.testing.fleet import FleetWorkspace, commit_version, create_fleet_workspace  # noqa: E402
from shipyard.testing.haproxy import haproxy_binary, haproxy_process  # noqa: E402
from shipyard.testing.receivers import free_port  # noqa: E402

STRATEGY = "{{type: rolling, per: host, batch: {batch}, drain_timeout: 5s}}"


def cli(ws: FleetWorkspace, *args: str, timeout: float = 600) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.update(CI="true", NO_COLOR="1", COLUMNS="200")
    return run_cli(ws.root, *args, env=env, timeout=timeout)


def set_batch(ws: FleetWorkspace, batch: str) -> None:
    text = ws.config_path.read_text(encoding="utf-8")
    for old in ("one_at_a_time", "half_at_a_time", "all_at_once"):
        text = text.replace(f"batch: {old}", f"batch: {batch}")
    ws.config_path.write_text(text, encoding="utf-8")


def deploy_under_load(ws: FleetWorkspace, url: str, rps: float) -> tuple[dict[str, Any], dict[str, Any]]:
    load = LoadRunner(f"{url}/version", rps, timeout=5.0).start()
    started = time.monotonic()
    try:
        res = cli(ws, "deploy", "api", "--env", "prod", "--json")
        took = time.monotonic() - started
        time.sleep(0.5)                      # a little steady load after the last switch, too
    finally:
        result = load.stop(timeout=30)
    out = res.json() if res.stdout.strip().startswith("{") else {"state": "error", "reason": res.stderr[-300:]}
    return out, {"requests_total": result.total, "requests_failed": result.failed,
                 "deploy_seconds": round(took, 2), "state": out.get("state")}


def rollback_seconds(ws: FleetWorkspace, deployment: str) -> float | None:
    shown = cli(ws, "show", deployment, "--json").json()
    steps = [s for s in shown["steps"] if s["phase"] == "rollback"]
    if not steps:
        return None
    from datetime import datetime
    starts = [datetime.fromisoformat(s["started_at"]) for s in steps if s.get("started_at")]
    ends = [datetime.fromisoformat(s["ended_at"]) for s in steps if s.get("ended_at")]
    if not starts or not ends:
        return None
    return round((max(ends) - min(starts)).total_seconds(), 3)


def cpu_busy() -> tuple[int, int]:
    """This machine's busy and total CPU ticks so far (/proc/stat): the test hosts share its cores."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


async def ship_times(ws: FleetWorkspace, names: list[str], rounds: int = 3) -> dict[str, Any]:
    """Seconds (median of `rounds`) to ship one fresh release to the first host, to every host at once, and
    to every host one after another, over connections already open (a deploy has probed every host's agent
    before it ships). `cpu_busy_all_hosts`: how busy this machine's cores were while shipping to all."""
    from shipyard.cli.project import Project
    from shipyard.hosts.ship import ship_release

    project = Project.load(ws.config_path)
    releases = project.state_dir / "releases" / "api"
    built = max(releases.iterdir(), key=lambda p: p.stat().st_mtime)
    seen: dict[str, list[float]] = {"one": [], "all": [], "serial": [], "busy": [], "controller": []}
    async with project.ssh_pool() as pool:
        await pool.each(names, lambda h: pool.run(h, ["true"], timeout=30))

        async def ship(label: str, hosts: list[str]) -> float:
            fresh = built.with_name(f"bench-ship-{label}-{os.getpid()}")
            subprocess.run(["cp", "-a", str(built), str(fresh)], check=True)
            try:
                started = time.monotonic()
                await ship_release(pool, hosts, fresh, "api", fresh.name, 10, in_use=set())
                return time.monotonic() - started
            finally:
                subprocess.run(["rm", "-rf", str(fresh)], check=True)

        for n in range(rounds):
            seen["one"].append(await ship(f"one{n}", names[:1]))
            busy0, total0 = cpu_busy()
            cpu0 = time.process_time()
            seen["all"].append(await ship(f"all{n}", names))
            seen["controller"].append(time.process_time() - cpu0)
            busy1, total1 = cpu_busy()
            seen["busy"].append((busy1 - busy0) / max(1, total1 - total0))
            serial = 0.0
            for host in names:
                serial += await ship(f"serial{n}-{host}", [host])
            seen["serial"].append(serial)
    one, every, serial = (statistics.median(seen[k]) for k in ("one", "all", "serial"))
    return {"ship_seconds_one_host": round(one, 3), "ship_seconds_all_hosts": round(every, 3),
            "ship_seconds_host_after_host": round(serial, 3), "ship_ratio_all_to_one": round(every / one, 2),
            "ship_ratio_all_to_host_after_host": round(every / serial, 2),
            "cpu_busy_all_hosts": round(statistics.median(seen["busy"]), 2),
            "controller_cpu_seconds_all_hosts": round(statistics.median(seen["controller"]), 3)}


async def swap_ms(socket: str, backend: str, rounds: int = 30) -> dict[str, float]:
    """One host's weight change through the runtime API, as a deploy makes it (set, then read back)."""
    router = HaproxyRouter(UnixSocketChannel(socket), backend)
    live = await router.backends()
    samples = []
    for n in range(rounds):
        weights = [WeightedBackend(b.address, (b.weight if i else (50 if n % 2 == 0 else 100)), b.revision,
                                   b.instance) for i, b in enumerate(live)]
        started = time.perf_counter()
        await router.set_backends(weights)
        assert await router.verify(weights)
        samples.append((time.perf_counter() - started) * 1000)
    await router.set_backends(live)
    samples.sort()
    return {"median": round(statistics.median(samples), 2), "p90": round(samples[int(0.9 * len(samples)) - 1], 2),
            "max": round(samples[-1], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--rps", type=float, default=200.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    binary = haproxy_binary()
    if binary is None or os.geteuid() != 0:
        print("needs root and haproxy (scripts/bootstrap installs it)", file=sys.stderr)
        return 2
    pool = open_pool("sb")
    factory = HostFactory(pool)
    out: dict[str, Any] = {"hosts": args.hosts, "router": "haproxy"}
    try:
        hosts = [factory.add(f"web-{n + 1}") for n in range(args.hosts)]
        with haproxy_process(binary, slots=4 * args.hosts, port=free_port()) as hx, \
                tempfile.TemporaryDirectory(prefix="shy-fleet-") as tmp:
            router = f'{{type: haproxy, socket: "{hx.socket}", backend: {hx.backend}, listen: "{hx.listen}"}}'
            ws = create_fleet_workspace(Path(tmp) / "ws", hosts, Path(hosts[0].client_key), router=router,
                                        strategy=STRATEGY.format(batch="one_at_a_time"))
            started = time.monotonic()
            setup = cli(ws, "hosts", "setup")
            out["setup_seconds"] = round(time.monotonic() - started, 2)
            if setup.returncode != 0:
                raise SystemExit(f"hosts setup failed: {setup.stderr[-500:]}")
            first = cli(ws, "deploy", "api", "--env", "prod", "--json")
            if first.returncode != 0:
                raise SystemExit(f"first deploy failed: {first.stderr[-500:]}")
            commit_version(ws, "2.0.0")
            _, out["one_at_a_time"] = deploy_under_load(ws, hx.url, args.rps)
            set_batch(ws, "half_at_a_time")
            commit_version(ws, "3.0.0")
            _, out["half_at_a_time"] = deploy_under_load(ws, hx.url, args.rps)
            commit_version(ws, "4.0.0", fail_health=True)
            failed, out["failing_release"] = deploy_under_load(ws, hx.url, args.rps)
            out["failing_release"]["rollback_seconds"] = rollback_seconds(ws, failed["id"]) if "id" in failed else None
            out.update(asyncio.run(ship_times(ws, [h.name for h in hosts])))
            out["traffic_change_ms"] = asyncio.run(swap_ms(hx.socket, hx.backend))
    finally:
        factory.close()
        pool.close()
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key:>24}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
