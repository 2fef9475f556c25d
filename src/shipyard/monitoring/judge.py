"""The canary judge: canary vs baseline over the same window, metric by metric, as a score from 0 to 100.

Modelled on Kayenta's approach, kept explainable: a metric fails only when the difference is both
statistically significant (Mann-Whitney U, which needs no normality assumption, on the per-interval samples)
and practically significant (the medians differ by more than `tolerance`, relative to the baseline, in the
harmful direction, and by at least `min_delta` absolutely). The score is the weighted share of passing
metrics; `pass_score` and `marginal_score` turn it into pass / marginal / fail.

Too little data is never a silent pass: if a metric has fewer than `min_samples` samples on either side, or
the canary served fewer than `min_requests` requests, the verdict is "nodata" and the configured policy
decides: `fail`, `pass` (recorded as such), or `pause` (the caller keeps collecting for up to `no_data_wait`
and judges again; still no data then fails).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Direction = Literal["increase", "decrease", "either"]


@dataclass(frozen=True)
class MetricCheck:
    metric: str
    direction: Direction = "increase"   # which change is harmful (error rate: increase)
    tolerance: float = 0.1              # allowed relative change of the median before it counts
    min_delta: float = 0.0              # ... and absolute change (0.001 more errors on 0 is not a regression)
    weight: float = 1.0


@dataclass(frozen=True)
class JudgeConfig:
    metrics: tuple[MetricCheck, ...]
    alpha: float = 0.05
    pass_score: float = 95.0
    marginal_score: float = 75.0
    min_samples: int = 3
    min_requests: int = 0
    no_data: Literal["fail", "pause", "pass"] = "fail"


@dataclass
class MetricResult:
    metric: str
    verdict: str                        # pass | fail | nodata
    canary: list[float]
    baseline: list[float]
    canary_median: float | None = None
    baseline_median: float | None = None
    relative_change: float | None = None
    p_value: float | None = None
    reason: str = ""


@dataclass
class Verdict:
    verdict: str                        # pass | marginal | fail | nodata
    score: float | None
    metrics: list[MetricResult] = field(default_factory=list)
    reason: str = ""
    thresholds: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def relative_change(canary: float, baseline: float) -> float:
    if baseline == 0:
        return 0.0 if canary == 0 else math.copysign(math.inf, canary)
    return (canary - baseline) / abs(baseline)


def judge_metric(check: MetricCheck, canary: Sequence[float], baseline: Sequence[float], *,
                 alpha: float, min_samples: int) -> MetricResult:
    c, b = [float(v) for v in canary], [float(v) for v in baseline]
    res = MetricResult(check.metric, "nodata", c, b)
    if len(c) < min_samples or len(b) < min_samples:
        res.reason = f"{len(c)} canary / {len(b)} baseline samples (need {min_samples} each)"
        return res
    cm, bm = statistics.median(c), statistics.median(b)
    change = relative_change(cm, bm)
    alternative = {"increase": "greater", "decrease": "less", "either": "two-sided"}[check.direction]
    constant = len(set(c) | set(b)) == 1     # identical constant series: nothing to test
    if constant:
        p = 1.0
    else:
        # Imported here: scipy.stats takes ~2 s to import, and every CLI command loads this module.
        from scipy.stats import mannwhitneyu
        p = float(mannwhitneyu(c, b, alternative=alternative).pvalue)
    harmful = {"increase": change > check.tolerance, "decrease": change < -check.tolerance,
               "either": abs(change) > check.tolerance}[check.direction]
    big_enough = abs(cm - bm) >= check.min_delta
    failed = p < alpha and harmful and big_enough
    res.canary_median, res.baseline_median, res.relative_change, res.p_value = cm, bm, change, p
    res.verdict = "fail" if failed else "pass"
    res.reason = (f"median {cm:.4g} vs {bm:.4g} ({change:+.1%}, tolerance {check.tolerance:.0%}), "
                  f"Mann-Whitney p={p:.3g} (alpha {alpha:g})")
    return res


def judge(config: JudgeConfig, canary: Mapping[str, Sequence[float]], baseline: Mapping[str, Sequence[float]],
          *, canary_requests: float | None = None) -> Verdict:
    """Score the canary; "nodata" means the no-data policy must decide (see `apply_policy`)."""
    thresholds = {"pass_score": config.pass_score, "marginal_score": config.marginal_score, "alpha": config.alpha,
                  "min_samples": config.min_samples, "min_requests": config.min_requests,
                  "no_data": config.no_data}
    results = [judge_metric(m, canary.get(m.metric, []), baseline.get(m.metric, []), alpha=config.alpha,
                            min_samples=config.min_samples) for m in config.metrics]
    if canary_requests is not None and canary_requests < config.min_requests:
        return Verdict("nodata", None, results, f"canary served {canary_requests:g} requests "
                       f"(need {config.min_requests})", thresholds)
    missing = [r.metric for r in results if r.verdict == "nodata"]
    if missing or not results:
        return Verdict("nodata", None, results, f"too little data for {', '.join(missing) or 'any metric'}",
                       thresholds)
    weights = {m.metric: m.weight for m in config.metrics}
    total = sum(weights[r.metric] for r in results)
    passed = sum(weights[r.metric] for r in results if r.verdict == "pass")
    score = round(100.0 * passed / total, 1) if total else 0.0
    verdict = "pass" if score >= config.pass_score else "marginal" if score >= config.marginal_score else "fail"
    failing = [r.metric for r in results if r.verdict == "fail"]
    reason = f"score {score:g} ({verdict}; pass at {config.pass_score:g}, marginal at {config.marginal_score:g})"
    if failing:
        reason += f"; failing: {', '.join(failing)}"
    return Verdict(verdict, score, results, reason, thresholds)


def apply_policy(verdict: Verdict, policy: str, *, final: bool) -> str:
    """What to do: "pass", "fail" or "wait" (pause policy, more data may still come)."""
    if verdict.verdict in ("pass", "marginal"):
        return "pass"
    if verdict.verdict == "fail":
        return "fail"
    if policy == "pass":
        return "pass"
    if policy == "pause" and not final:
        return "wait"
    return "fail"
