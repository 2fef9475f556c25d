"""The Markdown summary of a report: stats table, DORA table with bands, recommendations from the data.

Every recommendation is built from figures in the report and names them (a count, a share, a change
against the previous period); a figure that is missing or zero produces no sentence. With no deployments
in the period the summary says so and recommends nothing.
"""

from __future__ import annotations

from typing import Any

from shipyard.reports.bands import CHANGE_FAILURE, FREQUENCY, LEAD_TIME, ORDER, RECOVERY

KEY_NAMES = {"deployment_frequency": "deployment frequency", "lead_time": "lead time for changes",
             "change_failure_rate": "change failure rate", "time_to_restore": "time to restore"}


def human(seconds: float | None) -> str:
    """3725.0 -> "1h 2m"; 42.5 -> "42.5s"; None -> "-"."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds % 1 else f"{int(seconds)}s"
    s = round(seconds)
    for unit, size, sub, subsize in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if s >= size:
            return f"{s // size}{unit} {(s % size) // subsize}{sub}"
    return f"{s}s"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:g}%"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|")


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)]


def _counts_line(c: dict[str, Any]) -> str:
    return f"{c['total']} ({c['successful']} successful, {c['failed']} failed)"


def pipeline_section(pl: dict[str, Any] | None) -> list[str]:
    """Pipeline time (stages before traffic) per deployment against the KPI; nothing when none was timed."""
    if not pl or not pl["deployments"]:
        return []
    return ["## Pipeline", "", *_table(["", "this period"], [
        ["deployments timed", pl["deployments"]],
        ["p50 / p95 pipeline time", f"{human(pl['p50_seconds'])} / {human(pl['p95_seconds'])}"],
        ["longest", human(pl["max_seconds"])],
        [f"over the {human(pl['kpi_seconds'])} KPI", pl["over_kpi"]]]), ""]


def stats_section(st: dict[str, Any], prev: dict[str, Any] | None) -> list[str]:
    rows = [["deployments", st["total"]], ["successful", st["successful"]],
            ["failed (failed or rolled back)", st["failed"]], ["cancelled", st["cancelled"]],
            ["success rate", _pct(st["success_rate"])],
            ["average duration", human(st["average_duration_seconds"])],
            ["p50 / p90 duration", f"{human(st['p50_duration_seconds'])} / {human(st['p90_duration_seconds'])}"],
            ["last 7 days", _counts_line(st["last_7_days"])], ["last 30 days", _counts_line(st["last_30_days"])]]
    if prev is not None:
        prev_rows = [prev["total"], prev["successful"], prev["failed"], prev["cancelled"], _pct(prev["success_rate"]),
                     human(prev["average_duration_seconds"]),
                     f"{human(prev['p50_duration_seconds'])} / {human(prev['p90_duration_seconds'])}", "", ""]
        table = _table(["", "this period", "previous period"], [[*r, p] for r, p in zip(rows, prev_rows, strict=True)])
    else:
        table = _table(["", "this period"], rows)
    out = ["## Stats", "", *table, ""]
    if len(st["by_service_env"]) > 1:
        out += ["### By service and environment", "",
                *_table(["service", "env", "runs", "successful", "failed", "rolled back", "success rate",
                         "average duration"],
                        [[g["service"], g["env"], g["total"], g["successful"], g["failed"], g["rolled_back"],
                          _pct(g["success_rate"]), human(g["average_duration_seconds"])]
                         for g in st["by_service_env"]]), ""]
    return out


def _banded(text: str, band: str | None) -> str:
    return f"{text} ({band})" if band else text


def _dora_row(name: str, env: str, d: dict[str, Any]) -> list[str]:
    f, lt, cfr, ttr = (d["deployment_frequency"], d["lead_time"], d["change_failure_rate"], d["time_to_restore"])
    lead = "not read" if lt is None else (
        _banded(f"{human(lt['median_seconds'])} (p90 {human(lt['p90_seconds'])}, {lt['commits']} commits)", lt["band"])
        if lt["commits"] else "no commits read")
    restore = _banded(human(ttr["median_seconds"]), ttr["band"]) if ttr["restored"] else "-"
    if ttr["unrestored"]:
        restore += f", {ttr['unrestored']} not restored yet"
    return [name, env, _banded(f"{f['deploys']} ({f['per_week']:g}/week)", f["band"]), lead,
            _banded(f"{_pct(cfr['rate'])} of {cfr['finished']}", cfr["band"]), restore]


def dora_section(dora: dict[str, Any]) -> list[str]:
    rows = [_dora_row(g["service"], g["env"], g) for g in dora["by_service_env"]]
    if len(rows) > 1:
        rows.append(_dora_row("all", "", dora["overall"]))
    return [f"## DORA (bands: {dora['bands_source']})", "",
            *_table(["service", "env", "deployment frequency", "lead time (median)", "change failure rate",
                     "time to restore (median)"], rows), ""]


def _change(now: float, before: float) -> str:
    return f"{(now - before) / before * 100:+.0f}%" if before else "new"


def recommendations(rep: dict[str, Any]) -> list[str]:
    """Sentences that follow from the figures of `rep` (see the module docstring)."""
    st, out = rep["stats"], []
    if st["failing_steps"]:
        top = st["failing_steps"][0]
        out.append(f"Look at `{top['kind']}` steps first: they failed {top['failures']} times, "
                   f"{top['failures']} of the {st['failed_steps']} failed steps in this period.")
    if st["rollbacks_by_service"]:
        top = st["rollbacks_by_service"][0]
        runs = sum(g["total"] for g in st["by_service_env"] if g["service"] == top["service"])
        out.append(f"`{top['service']}` rolls back most: {top['rolled_back']} of its {runs} runs ended rolled back.")
    if st["slowest_steps"]:
        top = st["slowest_steps"][0]
        out.append(f"The slowest stage is `{top['kind']}`: {human(top['average_seconds'])} on average over "
                   f"{top['count']} runs of it.")
    out += _trend(st, (rep.get("previous") or {}).get("stats"))
    out += _dora_advice(rep["dora"])
    return out


def _trend(st: dict[str, Any], prev: dict[str, Any] | None) -> list[str]:
    if prev is None:
        return []
    if not prev["total"]:
        return ["There were no deployments in the previous period to compare with."]
    out = []
    if st["failed"] != prev["failed"]:
        word = "More" if st["failed"] > prev["failed"] else "Fewer"
        out.append(f"{word} failures than in the previous period: {st['failed']} against {prev['failed']}.")
    else:
        out.append(f"As many failures as in the previous period: {st['failed']}.")
    now, before = st["average_duration_seconds"], prev["average_duration_seconds"]
    if now is not None and before is not None and human(now) != human(before):
        word = "slower" if now > before else "faster"
        out.append(f"Deployments got {word}: {human(now)} on average against {human(before)} "
                   f"({_change(now, before)}).")
    return out


def _dora_advice(dora: dict[str, Any]) -> list[str]:
    overall, out = dora["overall"], []
    keyed = [(k, (overall[k] or {}).get("band")) for k in KEY_NAMES]
    banded = [(k, b) for k, b in keyed if b is not None]
    if banded:
        key, band = max(banded, key=lambda kb: ORDER.index(kb[1]))
        if band != "elite":
            out.append(f"The weakest DORA key is {KEY_NAMES[key]} ({band}): {_figure(key, overall[key])}; "
                       f"elite is {_elite(key)}.")
    ttr = overall["time_to_restore"]
    if ttr["unrestored"]:
        n = ttr["unrestored"]
        out.append(f"{n} failed deploy has no successful run after it yet." if n == 1 else
                   f"{n} failed deploys have no successful run after them yet.")
    return out


def _figure(key: str, d: dict[str, Any]) -> str:
    if key == "deployment_frequency":
        return f"{d['per_week']:g} successful deploys a week"
    if key == "change_failure_rate":
        return f"{_pct(d['rate'])} of {d['finished']} finished deploys failed"
    return f"median {human(d['median_seconds'])}"


def _elite(key: str) -> str:
    if key == "deployment_frequency":
        return f"at least {FREQUENCY[0][1]:g} a day"
    if key == "change_failure_rate":
        return f"at most {CHANGE_FAILURE[0][1]:g}%"
    return f"under {human((LEAD_TIME if key == 'lead_time' else RECOVERY)[0][1])}"


def render_markdown(rep: dict[str, Any]) -> str:
    period, filters = rep["period"], rep.get("filters") or {}
    scope = "".join(f", {k} {v}" for k, v in filters.items() if v)
    lines = [f"# Deployment report: {period['label']}", "",
             f"{period['since']} to {period['until']} (UTC){scope}", ""]
    if not rep["stats"]["total"]:
        return "\n".join([*lines, "No deployments in this period.", ""])
    prev = (rep.get("previous") or {}).get("stats")
    lines += stats_section(rep["stats"], prev if prev and prev["total"] else None)
    lines += dora_section(rep["dora"])
    lines += pipeline_section(rep.get("pipeline"))
    advice = recommendations(rep)
    if advice:
        lines += ["## Recommendations", "", *(f"- {a}" for a in advice), ""]
    return "\n".join(lines)
