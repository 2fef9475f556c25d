"""The canary judge: significance plus tolerance per metric, a score, and the explicit no-data policy."""

from __future__ import annotations

from shipyard.monitoring.judge import JudgeConfig, MetricCheck, apply_policy, judge, judge_metric, relative_change

ERR = MetricCheck("error_rate", "increase", tolerance=0.1, min_delta=0.01)
LAT = MetricCheck("latency_p95", "increase", tolerance=0.2, weight=1.0)


def test_a_significant_harmful_change_fails_and_noise_passes() -> None:
    base = [0.01, 0.012, 0.011, 0.009, 0.01, 0.013]
    bad = judge_metric(ERR, [0.2, 0.22, 0.19, 0.21, 0.2, 0.25], base, alpha=0.05, min_samples=3)
    assert bad.verdict == "fail" and bad.p_value is not None and bad.p_value < 0.05
    assert bad.relative_change is not None and bad.relative_change > 10
    same = judge_metric(ERR, [0.011, 0.01, 0.012, 0.009, 0.01, 0.011], base, alpha=0.05, min_samples=3)
    assert same.verdict == "pass"
    better = judge_metric(ERR, [0.0] * 6, base, alpha=0.05, min_samples=3)
    assert better.verdict == "pass"                       # a decrease is not harmful for error_rate
    tiny = judge_metric(ERR, [0.002, 0.003, 0.002, 0.003], [0.0, 0.0, 0.0, 0.001], alpha=0.05, min_samples=3)
    assert tiny.verdict == "pass"                          # +300% but under min_delta


def test_score_and_thresholds() -> None:
    cfg = JudgeConfig(metrics=(ERR, LAT), pass_score=95, marginal_score=50)
    base = {"error_rate": [0.01] * 3 + [0.011] * 3, "latency_p95": [0.1, 0.11, 0.1, 0.12, 0.1, 0.11]}
    good = judge(cfg, base, base)
    assert good.verdict == "pass" and good.score == 100
    half = judge(cfg, {**base, "latency_p95": [0.5, 0.6, 0.55, 0.5, 0.52, 0.58]}, base)
    assert half.verdict == "marginal" and half.score == 50 and "failing: latency_p95" in half.reason
    cfg2 = JudgeConfig(metrics=(ERR, LAT), pass_score=95, marginal_score=75)
    assert judge(cfg2, {**base, "latency_p95": [0.5, 0.6, 0.55, 0.5, 0.52, 0.58]}, base).verdict == "fail"


def test_no_data_and_low_traffic_go_to_the_policy() -> None:
    cfg = JudgeConfig(metrics=(ERR,), min_samples=3, min_requests=100)
    v = judge(cfg, {"error_rate": [0.1]}, {"error_rate": [0.1, 0.1, 0.1]})
    assert v.verdict == "nodata" and v.score is None and "error_rate" in v.reason
    low = judge(cfg, {"error_rate": [0.1] * 5}, {"error_rate": [0.1] * 5}, canary_requests=12)
    assert low.verdict == "nodata" and "12 requests" in low.reason
    assert apply_policy(v, "fail", final=False) == "fail"
    assert apply_policy(v, "pause", final=False) == "wait" and apply_policy(v, "pause", final=True) == "fail"
    assert apply_policy(v, "pass", final=True) == "pass"
    assert v.to_dict()["thresholds"]["min_requests"] == 100


def test_relative_change_against_zero() -> None:
    assert relative_change(0, 0) == 0 and relative_change(1, 0) == float("inf") and relative_change(1.5, 1) == 0.5
