"""Lead time from a real git repository: commits at set committer dates, deploys recorded against their shas."""

from __future__ import annotations

import os
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from reports_history import REVS, T0, UNTIL, write_history
from shipyard.reports import GitCommitReader, Period, dora
from shipyard.reports.commits import repo_dir
from shipyard.store import Store

# committer times of the chain c0 <- c1 <- c2 <- c3 <- c4 (A0..A4 of reports_history)
DATES = {"A0": T0 - timedelta(days=2), "A1": T0 + timedelta(hours=8), "A2": T0 + timedelta(days=1, hours=9),
         "A3": T0 + timedelta(days=2, hours=9), "A4": T0 + timedelta(days=3, hours=8)}


def _git(repo: Path, *args: str, date: datetime | None = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}
    if date is not None:
        env["GIT_COMMITTER_DATE"] = env["GIT_AUTHOR_DATE"] = date.isoformat()
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True,
                          timeout=30).stdout.strip()


@pytest.fixture
def api_repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    repo = tmp_path / "api"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    shas: dict[str, str] = {}
    for name, when in DATES.items():
        _git(repo, "commit", "-q", "--allow-empty", "-m", name, date=when)
        shas[name] = _git(repo, "rev-parse", "HEAD")
    return repo, shas


async def test_lead_time_from_git(sqlite_store: Store, api_repo: tuple[Path, dict[str, str]]) -> None:
    repo, shas = api_repo
    write_history(sqlite_store, {**REVS, **shas})
    d = await dora(sqlite_store, Period(T0, UNTIL), commits=GitCommitReader({"api": repo}))
    api = next(g for g in d["by_service_env"] if (g["service"], g["env"]) == ("api", "prod"))
    # d1 (ends 0d 10:01:40) carries c1 (A0 served before the period): 7300 s
    # d4 (ends 2d 10:06:40) carries c2 and c3: 90400 s and 4000 s
    # d6 (ends 3d 10:10:00) carries only c4 (c3 came with d4 already, though d6's previous is A1): 7800 s
    # sorted 4000 7300 7800 90400: median rank 2, p90 rank 4
    assert api["lead_time"] == {"commits": 4, "deploys": 3, "deploys_unread": 0, "median_seconds": 7300.0,
                                "p90_seconds": 90400.0, "band": "elite"}
    web = next(g for g in d["by_service_env"] if (g["service"], g["env"]) == ("web", "prod"))
    assert web["lead_time"]["deploys_unread"] == 1 and web["lead_time"]["commits"] == 0   # no repo for web
    assert d["overall"]["lead_time"]["commits"] == 4 and d["overall"]["lead_time"]["deploys_unread"] == 2


async def test_reader_edge_cases(api_repo: tuple[Path, dict[str, str]]) -> None:
    repo, shas = api_repo
    reader = GitCommitReader({"api": repo})
    first = await reader.commits("api", shas["A1"], [])
    assert first is not None and [c.sha for c in first] == [shas["A1"]]          # a first deploy: its head only
    assert first[0].committed_at == DATES["A1"]
    # an exclusion the repo does not have is dropped, the known one still applies
    found = await reader.commits("api", shas["A3"], ["f" * 40, shas["A1"]])
    assert found is not None and [c.sha for c in found] == [shas["A3"], shas["A2"]]
    assert await reader.commits("api", shas["A1"], [shas["A1"]]) == ()          # a redeploy carries nothing
    assert await reader.commits("api", "e" * 40, []) is None                    # revision not in the repo
    assert await reader.commits("api", "--all", []) is None                     # never an option
    assert await reader.commits("web", shas["A1"], []) is None                  # no repo for the service


def test_repo_dir(tmp_path: Path, api_repo: tuple[Path, dict[str, str]]) -> None:
    repo, _ = api_repo
    mirror = tmp_path / "mirrors" / "api.git"
    assert repo_dir(None, repo, mirror) == repo
    assert repo_dir("git@example.com:org/api.git", repo, mirror) is None        # mirror not made yet: no network
    _git(tmp_path, "clone", "-q", "--mirror", str(repo), str(mirror))
    assert repo_dir("git@example.com:org/api.git", repo, mirror) == mirror
    assert repo_dir(None, tmp_path / "nothing", mirror) is None


async def test_a_session_caller_gets_the_same_lead_time(sqlite_store: Store,
                                                       api_repo: tuple[Path, dict[str, str]]) -> None:
    """The API may pass its own session: the figures are the same as through the Store."""
    repo, shas = api_repo
    write_history(sqlite_store, {**REVS, **shas})
    reader = GitCommitReader({"api": repo})
    with sqlite_store.session(readonly=True) as s:
        d = await dora(s, Period(T0, UNTIL), service="api", env="prod", commits=reader)
    assert d["overall"]["lead_time"]["median_seconds"] == 7300.0
    assert d["by_service_env"][0]["change_failure_rate"]["rate"] == 60.0
