"""`shipyard demo` as a user runs it: under 60 s, zero failed requests, the rollback, nothing left running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line or environment mentions `text` (the demo's workspace)."""
    found = []
    needle = text.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in blob:
            found.append(int(entry.name))
    return found


def test_demo_runs_end_to_end_and_cleans_up(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "shipyard.cli.main", "demo", "--json", "--dir", str(workdir)],
                          capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["ok"] is True
    assert summary["load"]["requests_total"] > 0 and summary["load"]["requests_failed"] == 0
    assert summary["failing_release"]["state"] == "rolled_back"
    assert "unhealthy" in summary["failing_release"]["reason"]
    states = [(d["service"], d["state"]) for d in summary["deployments"]]
    assert states == [("api", "succeeded"), ("web", "succeeded"), ("api", "succeeded"), ("api", "rolled_back")]
    assert took < 60 * 2, f"demo took {took:.0f}s"       # the demo's own budget is 60 s; allow a loaded CI box
    assert summary["seconds"] < 60
    deadline = time.monotonic() + 10
    while processes_mentioning(str(workdir)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_mentioning(str(workdir)) == [], "the demo left processes running"


def test_demo_keep_leaves_it_running_until_the_agent_stops(tmp_path: Path) -> None:
    workdir = tmp_path / "kept"
    proc = subprocess.run([sys.executable, "-m", "shipyard.cli.main", "demo", "--json", "--keep", "--dir",
                           str(workdir)], capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    try:
        import httpx
        assert httpx.get(summary["api"] + "/version", timeout=5).json()["version"] == "2.0.0"
        assert processes_mentioning(str(workdir))
    finally:
        stop = subprocess.run([sys.executable, "-m", "shipyard.cli.main", "agent", "stop"], cwd=summary["workspace"],
                              capture_output=True, text=True, timeout=60)
        assert stop.returncode == 0, stop.stderr
    deadline = time.monotonic() + 10
    while processes_mentioning(str(workdir)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_mentioning(str(workdir)) == []
