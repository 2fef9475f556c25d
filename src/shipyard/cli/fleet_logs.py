"""`shipyard logs` for a service on hosts: each instance's log file read on its host over SSH.

The host's agent names each instance's log file (`log_path`) as it does locally; here `tail` runs on the
host through the pool (an argv, quoted in one place) and, with -f, the bytes past what was read are fetched
again every FOLLOW_POLL seconds, with new instances picked up as a deploy starts them. Lines are printed
as `host/instance | line` and pass the invocation's Redactor like every other output.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from shipyard.cli import render
from shipyard.cli.log_select import select_instances
from shipyard.cli.project import Project
from shipyard.errors import ShipyardError
from shipyard.ssh import SshPool

FOLLOW_POLL = 1.0
TAIL_TIMEOUT = 15.0


async def _tail(pool: SshPool, host: str, path: str, lines: int) -> tuple[list[str], int]:
    """The last `lines` lines of `path` on `host`, and the file's size when read (where a follow goes on)."""
    res = await pool.run(host, ["sh", "-c", 'wc -c < "$1"; tail -n "$2" "$1"', "sh", path, str(lines)],
                         timeout=TAIL_TIMEOUT)
    if not res.ok:
        raise ShipyardError(f"{host}: cannot read {path}: {res.err.strip() or f'exit {res.exit_status}'}")
    head, _, rest = res.out.partition("\n")
    return rest.splitlines(), int(head.strip() or 0)


async def _from(pool: SshPool, host: str, path: str, offset: int) -> tuple[list[str], int]:
    res = await pool.run(host, ["tail", "-c", f"+{offset + 1}", path], timeout=TAIL_TIMEOUT)
    if not res.ok:
        return [], offset
    data = res.stdout
    cut = data.rfind(b"\n") + 1          # a partial last line waits for its end
    return data[:cut].decode("utf-8", "replace").splitlines(), offset + cut


async def show_fleet_logs(project: Project, service: str, env: str, instance: str | None, follow: bool,
                          lines: int, as_json: bool, stop: asyncio.Event) -> None:
    s = project.settings(service, env)
    async with project.agent(start=False) as agent:
        pool, _ = project.fleet(agent)
        target = project.ssh_target(s, agent)
        target.watch(lambda hosts, reachable: True,
                     lambda host, why, carry_on: render.note(f"({host} unreachable: {why})"))

        async def records() -> list[dict[str, Any]]:
            return [{"id": i.id, "state": i.state, "log_path": i.log_path, "host": i.labels.get("host", ""),
                     "started_at": 0} for i in await target.instances()]

        chosen = select_instances(await records(), instance, f"{service} in {env}")
        if not chosen and not follow:
            raise ShipyardError(f"no instances of {service} in {env} (see `shipyard status`)")

        def out(rec: dict[str, Any], text: list[str]) -> None:
            if as_json:
                render.json_lines({"host": rec["host"], "instance": rec["id"], "line": line} for line in text)
            else:
                render.plain_lines(f"{rec['host']}/{rec['id']} | {line}" for line in text)

        offsets: dict[str, int] = {}
        for rec in chosen:
            text, offsets[rec["id"]] = await _tail(pool, rec["host"], rec["log_path"], lines)
            out(rec, text)
        while follow and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FOLLOW_POLL)
            if instance is None:
                for rec in select_instances(await records(), None, f"{service} in {env}"):
                    if rec["id"] not in offsets:
                        render.note(f"({rec['host']}/{rec['id']} started)")
                        chosen.append(rec)
                        offsets[rec["id"]] = 0
            for rec in chosen:
                text, offsets[rec["id"]] = await _from(pool, rec["host"], rec["log_path"], offsets[rec["id"]])
                out(rec, text)
