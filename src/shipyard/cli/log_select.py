"""Which instances `shipyard logs` shows and how their lines are printed: shared by the local logs
(cli/logs.py) and the logs of instances on hosts (cli/fleet_logs.py)."""

from __future__ import annotations

from typing import Any

from shipyard.cli import render
from shipyard.errors import UsageError

ENDED = "stopped"   # an instance stopped on purpose (an old revision): not shown unless asked for by id


def select_instances(records: list[dict[str, Any]], wanted: str | None, where: str) -> list[dict[str, Any]]:
    """The instances to show: `wanted` (an id or the unique start of one, in any state), else every
    instance not stopped on purpose, oldest first."""
    if wanted is None:
        return sorted((r for r in records if r.get("state") != ENDED), key=lambda r: r.get("started_at") or 0)
    exact = [r for r in records if r["id"] == wanted]
    hits = exact or [r for r in records if r["id"].startswith(wanted)]
    if len(hits) == 1:
        return hits
    known = ", ".join(sorted(r["id"] for r in (hits or records))) or "none"
    if not hits:
        raise UsageError(f"no instance {wanted!r} of {where} (known: {known}; see `shipyard status`)")
    raise UsageError(f"{wanted!r} is ambiguous among the instances of {where}: {known}")


class Printer:
    """Lines out, as text (`id | line` when several instances are shown) or as JSON Lines."""

    def __init__(self, as_json: bool, prefixed: bool) -> None:
        self.as_json = as_json
        self.prefixed = prefixed

    def __call__(self, instance: str, lines: list[str]) -> None:
        if not lines:
            return
        if self.as_json:
            render.json_lines({"instance": instance, "line": line} for line in lines)
        else:
            render.plain_lines(f"{instance} | {line}" if self.prefixed else line for line in lines)
