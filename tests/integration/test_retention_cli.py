"""`shipyard prune` and the daemon's `retention` work end to end, and a prune SIGKILLed between batches.

The history is tests/reports_history.py's (November 2026): with 1 day of retention all of it is past the
cutoff but q1 (queued) and each service/env's two newest good releases.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from test_retention import same

from reports_history import T0, UNTIL, write_history
from shipyard.reports import Period, compute_dora, compute_stats
from shipyard.store import Store
from shipyard.store.models import Deployment
from shipyard.store.retention import prune
from shipyard.testing.cli import cli_argv, run_cli
from shipyard.testing.processes import stop_process
from shipyard.testing.receivers import free_port
from shipyard.testing.wait import wait_until

KEPT = {"d5", "d6", "w1", "w3", "q1"}          # api/prod's two newest good runs, web's, and the queued one


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    return {**env, "NO_COLOR": "1", "COLUMNS": "200", "PYTHONPATH": os.pathsep.join(sys.path)}


def _workspace(tmp_path: Path, url: str, extra: str = "") -> Path:
    (tmp_path / "shipyard.yaml").write_text(f'project: demo\nstate: "{url}"\nenvironments:\n  prod: {{branch: prod}}\n'
                                            f"{extra}")
    return tmp_path


def _ids(url: str) -> set[str]:
    with Store.open(url) as store, store.session(readonly=True) as s:
        return set(s.scalars(select(Deployment.id)))


def _figures(url: str) -> list[dict[str, object]]:
    with Store.open(url) as store, store.session(readonly=True) as s:
        return [{"stats": compute_stats(s, p), "dora": compute_dora(s, p)}
                for p in (Period(T0 - timedelta(days=1), UNTIL), Period(T0 + timedelta(days=3), UNTIL))]


@pytest.fixture
def url(db_url: str) -> str:
    with Store.open(db_url) as store:
        write_history(store)
    return db_url


def test_prune_dry_run_then_prune(url: str, tmp_path: Path) -> None:
    ws = _workspace(tmp_path, url)
    dry = run_cli(ws, "prune", "--older-than", "1d", "--dry-run", "--json", env=_env(), timeout=60)
    assert dry.returncode == 0, str(dry)
    assert dry.json()["would_delete"] == {"deployments": 7, "steps": 10, "events": 0, "outbox": 0,
                                           "git_triggers": 0, "git_deliveries": 0}
    assert len(_ids(url)) == 12
    done = run_cli(ws, "prune", "--older-than", "1d", env=_env(), timeout=60)
    assert done.returncode == 0, str(done)
    assert "deleted 7 runs, 10 steps" in done.stdout and "5 older runs kept" in done.stdout
    assert _ids(url) == KEPT


def test_prune_without_a_retention_or_with_a_bad_one_is_a_usage_error(url: str, tmp_path: Path) -> None:
    ws = _workspace(tmp_path, url)
    for args, message in ((("prune",), "no retention configured"),
                          (("prune", "--older-than", "soon"), "--older-than: invalid duration"),
                          (("prune", "--older-than", "2h"), "at least 1d")):
        res = run_cli(ws, *args, env=_env(), timeout=60)
        assert res.returncode == 2 and message in res.stderr, str(res)
    assert len(_ids(url)) == 12


def test_serve_with_a_retention_prunes_at_start(url: str, tmp_path: Path) -> None:
    ws = _workspace(tmp_path, url, "retention: 1d\nserve: {outbox: false}\n")
    port = free_port()
    proc = subprocess.Popen(cli_argv("serve", "--listen", f"127.0.0.1:{port}"), cwd=ws, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _ids(url) == KEPT, 60, "the retention work to prune the old history")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        stop_process(proc, timeout=30)


# A prune in its own process that stops before each transaction until it is told to go on.
STEPPED = """
import sys
from shipyard.store import Store
from shipyard.store.retention import prune
def checkpoint(what):
    print(what, flush=True)
    sys.stdin.readline()
with Store.open(sys.argv[1]) as store:
    prune(store, 86400.0, batch=2, checkpoint=checkpoint)
print("done", flush=True)
"""


@pytest.mark.parametrize("kill_at", [("fold", 3), ("deployments", 2), ("deployments", 4)])
def test_a_prune_sigkilled_between_batches_leaves_a_consistent_store(url: str, kill_at: tuple[str, int]) -> None:
    before = _figures(url)
    proc = subprocess.Popen([sys.executable, "-c", STEPPED, url], env=_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        assert proc.stdin is not None and proc.stdout is not None
        seen = 0
        while True:
            line = proc.stdout.readline()
            assert line, "the prune ended before the point to kill it at"
            seen += line.split()[0] == kill_at[0]
            if seen == kill_at[1]:
                break
            proc.stdin.write("\n")
            proc.stdin.flush()
        proc.kill()
        proc.wait(timeout=30)
    finally:
        watchdog.cancel()
    left = _ids(url)
    if kill_at[0] == "fold":
        assert len(left) == 12 and _figures(url) == before      # the horizon has not moved: all raw, as before
    else:
        assert left > KEPT and len(left) < 12                    # stopped half-way through the deletes
    same(before, _figures(url))
    with Store.open(url) as store:
        prune(store, 86400.0)
    assert _ids(url) == KEPT
    same(before, _figures(url))
