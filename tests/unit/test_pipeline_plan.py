"""`pipeline`, `stages` and `scan` in shipyard.yaml, and where the planner puts the stages (all before the
first instance starts)."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from shipyard.config import Config, check_text
from shipyard.domain.plan import Migrate, Prepare, RunHook, Scan, Stage, StartNew, step_from_dict
from shipyard.strategies import PlanInput, Rolling, compose

BASE = """\
project: p
environments: {stg: {branch: stg}}
repos: {api: {path: .}}
services:
  api:
    repo: api
    run: python app.py
"""


def check(extra: str) -> tuple[Config | None, list[str]]:
    text = BASE + textwrap.indent(textwrap.dedent(extra), "    ")
    config, found = check_text(text, "shipyard.yaml", {})
    return config, [str(p) for p in found]


def test_a_full_pipeline_loads() -> None:
    config, found = check("""\
        migrate: python manage.py migrate
        pipeline: [test, build, scan, migrate]
        stages:
          test: {run: "pytest -q", timeout: 10m}
          lint: ruff check .
        scan:
          tool: npm
          fail_on: [critical]
          ignore: [{id: CVE-2024-1, until: 2027-01-31, reason: not reachable}]
        """.replace("pipeline: [test, build, scan, migrate]", "pipeline: [lint, test, build, scan, migrate]"))
    assert found == []
    assert config is not None
    svc = config.services["api"]
    assert svc.effective_pipeline == ("lint", "test", "build", "scan", "migrate")
    assert svc.stages["test"].timeout == 600 and svc.stages["lint"].run == "ruff check ."
    assert svc.scan.ignore[0].until == dt.date(2027, 1, 31) and svc.scan.unknown_severity == "high"


def test_default_pipeline_is_build_then_migrate() -> None:
    config, _ = check("migrate: ./m.sh\n")
    assert config is not None and config.services["api"].effective_pipeline == ("build", "migrate")


@pytest.mark.parametrize("extra, says", [
    ("pipeline: [test]\n", "unknown stage 'test'"),
    ("pipeline: [test, build]\nstages: {test: {run: ''}}\n", "run"),
    ("pipeline: [scan]\n", "must include `build`"),
    ("pipeline: [build, build]\n", "listed twice"),
    ("pipeline: [build, migrate]\n", "needs the service's `migrate`"),
    ("migrate: ./m.sh\npipeline: [build]\n", "say where it runs"),
    ("stages: {test: pytest}\n", "defined but not run"),
    ("pipeline: [build]\nstages: {test: pytest}\n", "defined but not run"),
    ("pipeline: [build, scan]\nstages: {scan: ./x}\n", "built-in stage"),
    ("pipeline: [build]\nstages: {}\nscan: {fail_on: [severe]}\n", "fail_on"),
    ("pipeline: [build]\nscan: {ignore: [{id: CVE-1}]}\n", "until"),
    ("pipeline: [build]\nscan: {ignore: [{id: CVE-1, until: someday}]}\n", "until"),
    ("pipeline: [build]\nscan: {tool: snyk}\n", "tool"),
    ("pipeline: [build]\nstages: {}\nscan: {timeout: -1}\n", "timeout"),
    ("pipeline: build\n", "pipeline"),
])
def test_garbage_pipeline_config_is_one_clear_problem(extra: str, says: str) -> None:
    config, found = check(extra)
    assert config is None and found, extra
    assert any(says in p for p in found), found


def test_stages_come_before_any_instance_in_pipeline_order() -> None:
    hooks = frozenset({"before_install", "after_install"})
    plan = compose(Rolling(), PlanInput(current=2, desired=2, hooks=hooks, migrate=True,
                                        pipeline=("test", "build", "scan", "migrate")))
    first_start = next(i for i, s in enumerate(plan.steps) if isinstance(s, StartNew))
    assert list(plan.steps[:first_start]) == [
        Stage("test", in_release=False), RunHook("before_install"), Prepare(), RunHook("after_install"),
        Scan(in_release=True), Migrate()]
    for step in plan.steps[:first_start]:
        assert step_from_dict(step.to_dict()) == step       # stored plans resume
    assert [s.describe() for s in plan.steps[:1]] == ["stage test"]


def test_no_pipeline_plans_as_before() -> None:
    plan = compose(Rolling(), PlanInput(current=0, desired=1, migrate=True))
    assert [s.kind for s in plan.steps[:2]] == ["prepare", "migrate"]
