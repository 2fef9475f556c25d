"""The checklist table of `shipyard show` and `shipyard checklist show` (rows as store.checklists.view makes
them), apart from the commands so reading commands load nothing more than they print."""

from __future__ import annotations

from typing import Any

from shipyard.cli import render


def show_items(items: list[dict[str, Any]]) -> None:
    """One row per item: its status, who or what decided it, when, and the last line of its detail."""
    if not items:
        return
    render.table("checklist", ["phase", "item", "kind", "status", "by", "at", "on fail", "detail"],
                 [(i["phase"], i["name"], i["kind"], render.styled(i["status"]), i["by"] or "",
                   (i["at"] or "")[11:19], i["on_fail"] or "", (i["detail"] or "").strip().splitlines()[-1:][0]
                   if (i["detail"] or "").strip() else "") for i in items])
