"""`shipyard show`: the vulnerability scan's findings, one line each (package, installed version, fix,
severity as judged, advisory id, verdict), blocking ones first, as the scan step stored them."""

from __future__ import annotations

from typing import Any

from shipyard.cli import render


def show_findings(steps: list[dict[str, Any]]) -> None:
    for st in steps:
        detail = st.get("detail") or {}
        if st.get("kind") != "scan" or "findings" not in detail:
            continue
        render.console.print(f"[bold]── findings of the {detail.get('tool', '')} scan "
                             f"({detail.get('summary', '')}; fail_on {', '.join(detail.get('fail_on', []))}) ──[/]")
        for f in detail["findings"]:
            fixed = f"fix {f['fixed']}" if f.get("fixed") else "no fix known"
            judged = f["judged_as"]
            if judged != f["severity"]:
                judged += f" (reported {f['severity']})"
            note = f" ({f['note']})" if f.get("note") else ""
            render.info(f"{f['verdict']:7}  {judged}  {f['id']}  {f['package']} {f['installed'] or '?'}  "
                        f"{fixed}{note}")
        for skipped in detail.get("unaudited", []):
            render.info(f"not audited: {skipped}")
