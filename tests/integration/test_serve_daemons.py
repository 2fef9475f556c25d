"""Two `shipyard serve` processes on one real PostgreSQL: the outbox worker runs in exactly one; SIGKILL it
and the other takes the work over within the lease TTL; a clean SIGTERM hands it over at once."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from shipyard.testing.cli import cli_argv, run_cli
from shipyard.testing.processes import stop_process
from shipyard.testing.receivers import free_port
from shipyard.testing.wait import wait_until

pytestmark = pytest.mark.postgres
TTL = 2.0


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.update(NO_COLOR="1", COLUMNS="200")
    return env


def test_two_daemons_split_the_work_and_take_it_over(pg_url: str, tmp_path: Path) -> None:
    (tmp_path / "shipyard.yaml").write_text(
        f"project: demo\nstate: \"{pg_url}\"\nenvironments:\n  stg: {{branch: stg}}\n"
        f"serve: {{lease_ttl: {TTL:g}s}}\n")
    made = run_cli(tmp_path, "tokens", "create", "--name", "ops", "--json", env=_env(), timeout=60)
    assert made.returncode == 0, str(made)
    token = made.json()["token"]
    ports = [free_port(), free_port()]
    procs = [subprocess.Popen(cli_argv("serve", "--listen", f"127.0.0.1:{p}"), cwd=tmp_path, env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for p in ports]

    def view(port: int) -> dict[str, object] | None:
        try:
            res = httpx.get(f"http://127.0.0.1:{port}/api/v1/daemons", headers={"Authorization": f"Bearer {token}"},
                            timeout=2)
        except httpx.HTTPError:
            return None
        return res.json() if res.status_code == 200 else None

    def running() -> list[int]:
        return [i for i, p in enumerate(ports) if "outbox" in (view(p) or {}).get("running_here", [])]

    try:
        wait_until(lambda: all(view(p) for p in ports), 60, "both daemons to answer")
        wait_until(lambda: len(running()) == 1, 20, "exactly one daemon to run the outbox")
        holder = running()[0]
        other = 1 - holder
        works = {row["work"] for row in view(ports[other])["leases"]}                 # type: ignore[index,union-attr]
        assert works == {"outbox", "aggregates"}, works

        # SIGKILL the holder: its lease stays until it expires, then the other takes the work.
        killed_at = time.monotonic()
        procs[holder].send_signal(signal.SIGKILL)
        procs[holder].wait(10)
        wait_until(lambda: "outbox" in (view(ports[other]) or {}).get("running_here", []), TTL + 10,
                   "the survivor to take the outbox over")
        assert time.monotonic() - killed_at <= TTL + 5
        lease = next(r for r in view(ports[other])["leases"] if r["work"] == "outbox")  # type: ignore[index,union-attr]
        assert lease["owner"] == view(ports[other])["this"]                           # type: ignore[index]

        # A third daemon waits; SIGTERM the survivor: it releases the lease, the third takes over at once.
        ports.append(free_port())
        procs.append(subprocess.Popen(cli_argv("serve", "--listen", f"127.0.0.1:{ports[2]}"), cwd=tmp_path,
                                      env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        wait_until(lambda: view(ports[2]) is not None, 60, "the third daemon to answer")
        assert view(ports[2])["running_here"] == []                                   # type: ignore[index]
        gone = view(ports[other])["this"]                                            # type: ignore[index]
        procs[other].send_signal(signal.SIGTERM)
        assert procs[other].wait(30) == 0
        # Released on the way out (not left to expire): no lease names the stopped daemon any more.
        assert all(row["owner"] != gone for row in view(ports[2])["leases"])          # type: ignore[index,union-attr]
        wait_until(lambda: "outbox" in (view(ports[2]) or {}).get("running_here", []), 10, "the third to take over")
    finally:
        for proc in procs:
            stop_process(proc, timeout=30)
