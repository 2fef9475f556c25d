"""`shipyard show`'s analysis section: every alarm's samples and state, and the canary verdicts.

Kept apart from history.py so the explainability output can grow without touching the history command.
"""

from __future__ import annotations

from typing import Any

from shipyard.cli import render


def _fmt(values: list[Any] | None, limit: int = 12) -> str:
    vals = list(values or [])[-limit:]
    return "[" + ", ".join("-" if v is None else f"{v:.4g}" for v in vals) + "]"


def show_analysis(steps: list[dict[str, Any]]) -> None:
    """Print one table of alarm evaluations and one of canary metrics, for every analyze step that has them."""
    alarm_rows: list[tuple[Any, ...]] = []
    canary_rows: list[tuple[Any, ...]] = []
    verdicts: list[str] = []
    for st in steps:
        detail = st.get("detail") or {}
        where = f"{st['phase']} #{st['idx'] + 1}"
        for name, a in (detail.get("alarms") or {}).items():
            last = a.get("last") or {}
            rule = (f"CloudWatch alarm {a['cloudwatch']}" if "cloudwatch" in a else
                    f"{a['metric']} {a['statistic']} {a['comparison']} {a['threshold']:g} "
                    f"({a['m_of_n'][0]} of {a['m_of_n'][1]}, period {a['period']:g}s, {a['treat_missing_data']})")
            alarm_rows.append((where, name, rule, render.styled(a["state"]), _fmt(last.get("values")),
                               last.get("reason") or a.get("error") or ""))
        canary = detail.get("canary")
        if canary:
            th = canary.get("thresholds", {})
            verdicts.append(f"{where}: canary {canary['verdict']} → {canary.get('action', '')}, score "
                            f"{canary.get('score')} (pass ≥ {th.get('pass_score')}, marginal ≥ "
                            f"{th.get('marginal_score')}, no-data policy {th.get('no_data')}): {canary['reason']}")
            for m in canary.get("metrics", []):
                canary_rows.append((where, m["metric"], render.styled(m["verdict"]), _fmt(m["canary"]),
                                    _fmt(m["baseline"]), m["reason"]))
    if alarm_rows:
        render.table("alarms", ["step", "alarm", "rule", "state", "per-period values", "why"], alarm_rows)
    if canary_rows or verdicts:
        render.table("canary analysis", ["step", "metric", "verdict", "canary samples", "baseline samples", "why"],
                     canary_rows)
        for line in verdicts:
            render.console.print(line, markup=False)
