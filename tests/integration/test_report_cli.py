"""`shipyard report` end to end on a demo workspace: JSON and Markdown, filters, lead time from the mirror, errors."""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta

import pytest
from test_reports_git import DATES, _git

from reports_history import REVS, T0, UNTIL, write_history
from shipyard.demo.workspace import Workspace, create_workspace
from shipyard.store import Store, default_url
from shipyard.testing.cli import CliResult, run_cli

WINDOW = ("--since", T0.isoformat(), "--until", UNTIL.isoformat())


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    return {**env, "CI": "true", "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "100"}


def _report(ws: Workspace, *args: str) -> CliResult:
    return run_cli(ws.root, "report", *args, env=_env(), timeout=90)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = create_workspace(tmp_path_factory.mktemp("report") / "ws", api_port=1, web_port=2)
    # commits at known committer times on the api origin, mirrored where deploys keep their mirror
    dev = ws.dev_clones["api"]
    shas = {}
    for name, when in DATES.items():
        _git(dev, "commit", "-q", "--allow-empty", "-m", f"change {name}", date=when)
        shas[name] = _git(dev, "rev-parse", "HEAD")
    _git(dev, "push", "-q", "origin", "HEAD")
    mirrors = ws.root / ".shipyard" / "mirrors"
    mirrors.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "-q", "--mirror", str(ws.origins["api"]), str(mirrors / "api.git")], check=True,
                   capture_output=True, timeout=60)
    with Store.open(default_url(ws.root)) as store:
        write_history(store, {**REVS, **shas})
    return ws


def test_json_report(ws: Workspace) -> None:
    res = _report(ws, *WINDOW, "--format", "json")
    assert res.returncode == 0, str(res)
    data = res.json()
    assert set(data) >= {"period", "stats", "dora", "previous"}
    assert data["stats"]["total"] == 10 and data["stats"]["success_rate"] == 55.56
    assert data["previous"]["stats"]["total"] == 1
    api = next(g for g in data["dora"]["by_service_env"] if (g["service"], g["env"]) == ("api", "prod"))
    assert api["lead_time"]["median_seconds"] == 7300.0 and api["lead_time"]["commits"] == 4
    assert api["change_failure_rate"]["rate"] == 60.0
    assert _report(ws, *WINDOW, "--json").json()["stats"] == data["stats"]


def test_filters(ws: Workspace) -> None:
    data = _report(ws, *WINDOW, "--service", "web", "--env", "prod", "--json").json()
    assert data["filters"] == {"service": "web", "env": "prod"}
    assert data["stats"]["total"] == 2 and len(data["dora"]["by_service_env"]) == 1


def test_markdown_report(ws: Workspace) -> None:
    res = _report(ws, *WINDOW, "--format", "md")
    assert res.returncode == 0, str(res)
    out = res.stdout
    assert out.startswith("# Deployment report")
    assert "| deployments | 10 | 1 |" in out
    assert "## DORA" in out and "| api | prod |" in out
    assert "Look at `wait_healthy` steps first: they failed 2 times" in out
    assert "`api` rolls back most: 2 of its 7 runs ended rolled back." in out
    assert "More failures than in the previous period: 4 against 0." in out


def test_an_empty_period_recommends_nothing(ws: Workspace) -> None:
    res = _report(ws, "--since", (T0 - timedelta(days=400)).isoformat(), "--until",
                  (T0 - timedelta(days=300)).isoformat())
    assert res.returncode == 0, str(res)
    assert "No deployments in this period." in res.stdout and "Recommendations" not in res.stdout
    assert _report(ws, "--period", "12h", "--json").json()["stats"]["total"] == 0      # the history is in 2026-11


@pytest.mark.parametrize(("args", "expected"), [
    (("--period", "5x"), "period must be a whole number"),
    (("--format", "xml"), "--format must be one of json, md"),
    (("--service", "nope"), "unknown service 'nope'"),
    (("--env", "nope"), "unknown environment 'nope'"),
    (("--until", "2026-11-01"), "--until needs --since"),
    (("--since", "soon"), "--since must be an ISO 8601 time"),
    (("--since", "2026-11-02", "--until", "2026-11-01"), "period must end after it starts"),
])
def test_bad_input_is_one_line_and_exit_2(ws: Workspace, args: tuple[str, ...], expected: str) -> None:
    res = _report(ws, *args)
    assert res.returncode == 2, str(res)
    assert len(res.error_lines) == 1 and res.error_lines[0].startswith("error: ") and expected in res.stderr, str(res)
    assert "Traceback" not in res.stderr
