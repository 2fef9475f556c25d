"""Charts as inline SVG, drawn on the server: no script, no library, readable by a screen reader.

Every chart is an `<svg role="img">` with a `<title>` and a `<desc>` that says in words what it shows (the
values, the threshold, the verdict); the page puts a table of the same numbers beside it. Series differ by
dash pattern and marker as well as colour (colour alone is not a text alternative). Values that are missing,
NaN or infinite are gaps, never zeros. Every text that reaches the SVG is escaped here.

Pure functions: data in, markup out (unit-tested as text).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

W, H = 480, 180            # the viewBox; the SVG scales to its box (width 100%)
PAD_L, PAD_R, PAD_T, PAD_B = 48, 12, 12, 28
_ids = itertools.count(1)


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[float | None]
    css: str                      # a class in dashboard.css: colour, dash pattern
    marker: str = "circle"        # circle | square


def finite(v: float | None) -> float | None:
    return v if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


def fmt(v: float | None) -> str:
    v = finite(v)
    return "no data" if v is None else f"{v:.4g}"


def _scale(lo: float, hi: float) -> tuple[float, float]:
    if lo == hi:
        pad = abs(lo) * 0.1 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    return (0.0 if lo >= 0 and lo - pad < 0 else lo - pad), hi + pad


def _frame(title: str, desc: str, body: str, lo: float, hi: float, n: int, xlabel: str) -> Markup:
    uid = f"c{next(_ids)}"
    y = lambda v: PAD_T + (H - PAD_T - PAD_B) * (1 - (v - lo) / (hi - lo))  # noqa: E731
    ticks = "".join(f'<line class="grid" x1="{PAD_L}" x2="{W - PAD_R}" y1="{y(t):.1f}" y2="{y(t):.1f}"/>'
                    f'<text class="tick" x="{PAD_L - 4}" y="{y(t) + 3:.1f}" text-anchor="end">{escape(fmt(t))}</text>'
                    for t in (lo, (lo + hi) / 2, hi))
    axis = (f'<text class="tick" x="{(PAD_L + W - PAD_R) / 2:.0f}" y="{H - 6}" text-anchor="middle">'
            f"{escape(xlabel)} (1-{n})</text>")
    return Markup(f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="{uid}t {uid}d" '
                  f'preserveAspectRatio="xMidYMid meet"><title id="{uid}t">{escape(title)}</title>'
                  f'<desc id="{uid}d">{escape(desc)}</desc>{ticks}{body}{axis}</svg>')


def _x(i: int, n: int) -> float:
    return PAD_L + (W - PAD_L - PAD_R) * (0.5 if n <= 1 else i / (n - 1))


def _polyline(series: Series, n: int, y: object) -> str:
    """The series as line segments (a gap where a value is missing) with a marker at each value."""
    out: list[str] = []
    run: list[str] = []
    for i, v in enumerate(series.values):
        fv = finite(v)
        if fv is None:
            if len(run) > 1:
                out.append(f'<polyline class="line {series.css}" points="{" ".join(run)}"/>')
            run = []
            continue
        px, py = _x(i, n), y(fv)  # type: ignore[operator]
        run.append(f"{px:.1f},{py:.1f}")
        if series.marker == "square":
            out.append(f'<rect class="dot {series.css}" x="{px - 3:.1f}" y="{py - 3:.1f}" width="6" height="6"/>')
        else:
            out.append(f'<circle class="dot {series.css}" cx="{px:.1f}" cy="{py:.1f}" r="3"/>')
    if len(run) > 1:
        out.append(f'<polyline class="line {series.css}" points="{" ".join(run)}"/>')
    return "".join(out)


def line_chart(title: str, desc: str, series: Sequence[Series], *, threshold: float | None = None,
               xlabel: str = "period") -> Markup:
    """Series over periods (or samples), with an optional threshold line."""
    vals = [fv for s in series for v in s.values if (fv := finite(v)) is not None]
    th = finite(threshold)
    bounds = [*vals, *([th] if th is not None else [])]
    n = max((len(s.values) for s in series), default=0)
    if not bounds or n == 0:
        return _empty(title, desc)
    lo, hi = _scale(min(bounds), max(bounds))
    y = lambda v: PAD_T + (H - PAD_T - PAD_B) * (1 - (v - lo) / (hi - lo))  # noqa: E731
    body = "".join(_polyline(s, n, y) for s in series)
    if th is not None:
        body += (f'<line class="threshold" x1="{PAD_L}" x2="{W - PAD_R}" y1="{y(th):.1f}" y2="{y(th):.1f}"/>'
                 f'<text class="tick threshold-label" x="{W - PAD_R}" y="{y(th) - 4:.1f}" text-anchor="end">'
                 f"threshold {escape(fmt(th))}</text>")
    return _frame(title, desc, body, lo, hi, n, xlabel)


def _empty(title: str, desc: str) -> Markup:
    uid = f"c{next(_ids)}"
    return Markup(f'<svg class="chart" viewBox="0 0 {W} 60" role="img" aria-labelledby="{uid}t {uid}d">'
                  f'<title id="{uid}t">{escape(title)}</title><desc id="{uid}d">{escape(desc)}</desc>'
                  f'<text class="tick" x="{W / 2:.0f}" y="34" text-anchor="middle">no data</text></svg>')


def alarm_chart(name: str, alarm: dict[str, Any]) -> Markup:
    """An alarm as the analysis saw it: its value per period against the threshold, and its state."""
    last: dict[str, Any] = alarm["last"] if isinstance(alarm.get("last"), dict) else {}
    values = [finite(v) for v in last.get("values", []) or []]
    threshold = alarm.get("threshold")
    th = finite(threshold) if isinstance(threshold, int | float) else None
    state = str(alarm.get("state", "unknown"))
    metric = str(alarm.get("metric", alarm.get("cloudwatch", name)))
    cmp = str(alarm.get("comparison", ""))
    desc = (f"Alarm {name}: {metric} per period, {len(values)} periods: "
            f"{', '.join(fmt(v) for v in values) or 'none'}; "
            + (f"alarm when {cmp} {fmt(th)}; " if th is not None else "")
            + f"state {state}. {last.get('reason', '')}")
    title = f"{name}: {metric} against its threshold ({state})"
    return line_chart(title, desc.strip(), [Series(metric, values, "s-value")], threshold=th)


def samples_chart(metric: dict[str, Any]) -> Markup:
    """A canary judgement of one metric: the canary's samples and the baseline's, with the verdict."""
    name = str(metric.get("metric", "metric"))
    canary = [finite(v) for v in metric.get("canary", []) or []]
    baseline = [finite(v) for v in metric.get("baseline", []) or []]
    verdict = str(metric.get("verdict", "?"))
    cm, bm = metric.get("canary_median"), metric.get("baseline_median")
    desc = (f"{name}: canary samples {', '.join(fmt(v) for v in canary) or 'none'} "
            f"(median {fmt(cm if isinstance(cm, int | float) else None)}); baseline samples "
            f"{', '.join(fmt(v) for v in baseline) or 'none'} "
            f"(median {fmt(bm if isinstance(bm, int | float) else None)}); verdict {verdict}. "
            f"{metric.get('reason', '')}")
    return line_chart(f"{name}: canary vs baseline ({verdict})", desc.strip(),
                      [Series("canary", canary, "s-canary", "circle"),
                       Series("baseline", baseline, "s-baseline", "square")], xlabel="sample")


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float | None], unit: str = "") -> Markup:
    """A trend: one bar per period (a missing value is a gap, marked "no data")."""
    vals = [finite(v) for v in values]
    real = [v for v in vals if v is not None]
    desc = f"{title}: " + "; ".join(f"{lab} {fmt(v)}{unit if v is not None else ''}"
                                    for lab, v in zip(labels, vals, strict=True))
    if not real:
        return _empty(title, desc)
    lo, hi = _scale(min(0.0, *real), max(real))
    n = len(vals)
    slot = (W - PAD_L - PAD_R) / n
    y = lambda v: PAD_T + (H - PAD_T - PAD_B) * (1 - (v - lo) / (hi - lo))  # noqa: E731
    body = []
    for i, (lab, v) in enumerate(zip(labels, vals, strict=True)):
        x = PAD_L + i * slot + slot * 0.15
        if v is not None:
            top, base = y(max(v, 0.0)), y(max(min(v, 0.0), lo))
            body.append(f'<rect class="bar" x="{x:.1f}" y="{top:.1f}" width="{slot * 0.7:.1f}" '
                        f'height="{max(base - top, 0.5):.1f}"><title>{escape(lab)}: {escape(fmt(v))}{escape(unit)}'
                        f"</title></rect>")
        body.append(f'<text class="tick" x="{x + slot * 0.35:.1f}" y="{H - PAD_B + 12}" text-anchor="middle">'
                    f"{escape(lab)}</text>")
    svg = _frame(title, desc, "".join(body), lo, hi, n, "")
    # bars carry their own labels under them: drop the generic x axis caption
    return Markup(str(svg).replace(f'text-anchor="middle"> (1-{n})</text>', 'text-anchor="middle"></text>'))


def split_bar(split: Sequence[tuple[str, float]]) -> Markup:
    """The traffic split between revisions as one stacked bar (the legend beside it gives the numbers)."""
    label = "traffic: " + ", ".join(f"{rev[:8]} {pct:g}%" for rev, pct in split)
    x, parts = 0.0, []
    for i, (_, pct) in enumerate(split):
        w = max(0.0, min(100.0 - x, float(pct)))
        parts.append(f'<rect class="seg seg{i % 3}" x="{x:.2f}" y="0" width="{w:.2f}" height="8"/>')
        x += w
    return Markup(f'<svg class="split" viewBox="0 0 100 8" preserveAspectRatio="none" role="img" '
                  f'aria-label="{escape(label)}"><rect class="seg-bg" x="0" y="0" width="100" height="8"/>'
                  f'{"".join(parts)}</svg>')
