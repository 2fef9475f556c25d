"""Helpers for the tests of a fleet of namespaced hosts (tests/nethosts.py) deployed over SSH behind a real
HAProxy: the CLI as a user runs it, what HAProxy serves, and the fleet itself. (fleet_helpers.py is another
thing: several repos promoted through environments.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from nethosts import HostFactory, TestHost
from shipyard.routers.haproxy import HaproxyRouter, UnixSocketChannel
from shipyard.testing.cli import CliResult, run_cli
from shipyard.testing.fleet import FleetWorkspace, create_fleet_workspace
from shipyard.testing.haproxy import Haproxy, haproxy_binary, haproxy_process
from shipyard.testing.receivers import free_port
from shipyard.testing.servers import missing_server

Fleet = tuple[FleetWorkspace, Haproxy, list[TestHost]]


def cli(ws: FleetWorkspace, *args: str, timeout: float = 180, **extra: str) -> CliResult:
    """`shipyard ARGS` in the workspace, without the caller's SHIPYARD_* variables (`extra` adds some)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.update(CI="true", NO_COLOR="1", COLUMNS="200", PYTHONUNBUFFERED="1", **extra)
    res = run_cli(ws.root, *args, env=env, timeout=timeout)
    assert "Traceback" not in res.stderr, str(res)
    return res


def ok(res: CliResult) -> CliResult:
    assert res.returncode == 0, str(res)
    return res


def served(hx: Haproxy) -> dict[str, int]:
    """Address -> weight of the servers HAProxy sends traffic to now."""
    router = HaproxyRouter(UnixSocketChannel(hx.socket), hx.backend)
    return {b.address: b.weight for b in asyncio.run(router.backends()) if b.weight > 0}


def events(ws: FleetWorkspace, deployment: str) -> list[dict[str, Any]]:
    shown = ok(cli(ws, "show", deployment, "--json")).json()
    return list(shown.get("events", []))


def version_of(hx: Haproxy) -> dict[str, Any]:
    """What the app behind HAProxy says it is (GET /version through the frontend)."""
    with urllib.request.urlopen(f"{hx.url}/version", timeout=5) as resp:
        return dict(json.load(resp))


@contextlib.contextmanager
def haproxy_fleet(nethosts: HostFactory, tmp_path: Path, count: int, *,
                  edit_config: Callable[[str], str] | None = None, **options: Any) -> Iterator[Fleet]:
    """`count` hosts web-1.. behind a HAProxy with 4 slots a host, a workspace deploying to them
    (create_fleet_workspace `options`; `edit_config` rewrites its shipyard.yaml), after `hosts setup`."""
    binary = haproxy_binary()
    if binary is None:
        missing_server("haproxy is missing (scripts/bootstrap installs it)")
    hosts = [nethosts.add(f"web-{n + 1}") for n in range(count)]
    with haproxy_process(binary, slots=4 * count, port=free_port()) as hx:
        router = f'{{type: haproxy, socket: "{hx.socket}", backend: {hx.backend}, listen: "{hx.listen}"}}'
        ws = create_fleet_workspace(tmp_path / "ws", hosts, Path(hosts[0].client_key), router=router, **options)
        if edit_config is not None:
            ws.config_path.write_text(edit_config(ws.config_path.read_text()))
        ok(cli(ws, "hosts", "setup", timeout=300))
        yield ws, hx, hosts
