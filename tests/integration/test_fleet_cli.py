"""The fleet commands as a user runs them (subprocesses): prompts, exit codes, one-line errors, reports.

Prompts are answered through stdin; "no terminal" is stdin from /dev/null (or CI=true), which must refuse
at once instead of waiting for an answer that never comes.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet_helpers import CliResult, Driver, Fleet, git, make_fleet, run_cli

from shipyard.cli.project import Project
from shipyard.cli.promotion_view import promotions_table


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    yield make_fleet(tmp_path / "f", 3)


def cli(f: Fleet, *args: str, input: str | None = None, **env: str) -> CliResult:
    return run_cli(f.root, *args, input=input, **env)


def one_error(res: CliResult, code: int) -> str:
    """Exit `code`, no traceback, and exactly one `error:` line on stderr (after any prompts)."""
    assert res.returncode == code, str(res)
    assert "Traceback" not in res.stdout + res.stderr, str(res)
    errors = [line for line in res.error_lines if "error:" in line]
    assert len(errors) == 1 and res.error_lines[-1].startswith("error: "), str(res)
    return res.error_lines[-1]


def test_prod_asks_twice_and_never_hangs(fleet: Fleet) -> None:
    f = fleet
    f.commit("svc0", "stg", {"a.txt": "1"})
    before = f.sha("svc0", "main")

    wrong = cli(f, "promote", "stg", "prod", input="y\nstg\n")
    assert "confirmation did not match 'prod': nothing was pushed" in one_error(wrong, 1)
    no_tty = cli(f, "promote", "stg", "prod")                                  # stdin is /dev/null
    assert "needs confirmation (prod has confirm: twice)" in one_error(no_tty, 2)
    assert "pass --yes" in no_tty.stderr
    in_ci = cli(f, "promote", "stg", "prod", input="y\nprod\n", CI="true")     # CI: never read a pipe
    one_error(in_ci, 2)
    assert f.sha("svc0", "main") == before and not f.tags("svc0")

    ok = cli(f, "promote", "stg", "prod", input="y\nprod\n")
    assert ok.returncode == 0, str(ok)
    assert "Type the environment name (prod)" in ok.stderr and "svc0" in ok.stdout
    assert f.sha("svc0", "main") != before and any(t.startswith("deploy-") for t in f.tags("svc0"))

    f.commit("svc1", "stg", {"b.txt": "2"})
    yes = cli(f, "promote", "stg", "prod", "--yes", "--json")
    assert yes.returncode == 0, str(yes)
    out = yes.json()
    assert out["outcome"]["state"] == "completed"
    assert [r["result"] for r in out["outcome"]["repos"]] == ["skipped", "pushed", "skipped"]


def test_refusals_are_one_line_per_repo_then_one_error(fleet: Fleet) -> None:
    f = fleet
    f.commit("svc0", "dev", {"a.txt": "1"})
    (f.clones["svc2"] / "app.txt").write_text("local edit\n")
    git(f.clones["svc1"], "checkout", "--quiet", "--detach")

    res = cli(f, "promote", "dev", "stg", "--yes")

    line = one_error(res, 1)
    assert line == "error: nothing changed: 2 of 3 repos are not ready (svc1, svc2)"
    assert "svc1: detached HEAD at" in res.stdout
    assert "svc2: working tree has 1 uncommitted change(s) (app.txt); commit or stash them" in res.stdout
    assert "cannot promote dev to prod: it is promoted from stg" in one_error(cli(f, "promote", "dev", "prod"), 2)


def test_conflict_dry_run_and_history(fleet: Fleet) -> None:
    f = fleet
    for n in f.names:
        f.commit(n, "dev", {"app.txt": "dev\n"}, f"dev work {n}")
    f.commit("svc2", "stg", {"app.txt": "stg\n"})

    dry = cli(f, "promote", "dev", "stg", "--dry-run")
    assert "dev work svc0" in dry.stdout and "conflicts in app.txt" in dry.stdout
    assert "cannot be promoted (svc2)" in one_error(dry, 1)
    real = cli(f, "promote", "dev", "stg", "--yes", "-m", "try", "--json")
    one_error(real, 1)
    data = real.json()
    assert data["problems"] == [{"repo": "svc2", "problem": "merging dev into stg conflicts in app.txt"}]
    assert data["plan"]["repos"][0]["moving"][0]["commits"][0]["subject"] == "dev work svc0"
    assert not any(f.tags(n) for n in f.names)

    Driver(f).promote("stg", "prod")                  # svc2's stg commit: a completed promotion to list too
    project = Project.load(f.config_path)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        promotions_table(project, 10, True)
    project.close()
    rows = json.loads(buf.getvalue())["promotions"]
    assert [(r["state"], r["kind"], r["target_env"]) for r in rows] == [("completed", "promote", "prod"),
                                                                        ("failed", "promote", "stg")]
    assert rows[1]["message"] == "try" and rows[1]["actor"] == "fleet-test"
    assert {r["repo"]: r["result"] for r in rows[1]["repos"]} == {"svc0": "not_pushed", "svc1": "not_pushed",
                                                                  "svc2": "conflict"}
    assert {r["repo"]: r["result"] for r in rows[0]["repos"]} == {"svc0": "skipped", "svc1": "skipped",
                                                                  "svc2": "pushed"}


def _decline_pushes(f: Fleet, name: str) -> Path:
    hook = f.origins[name] / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'declined by policy' >&2\nexit 1\n")
    hook.chmod(0o755)
    return hook


def test_rejected_push_compensates_or_keeps_partial_then_resume(fleet: Fleet) -> None:
    f = fleet
    for n in f.names:
        f.commit(n, "dev", {"x.txt": n})
    before = f.remote_state()
    hook = _decline_pushes(f, "svc1")

    res = cli(f, "promote", "dev", "stg", "--yes", "--jobs", "1")
    line = one_error(res, 1)
    assert "compensated: push failed in svc1; the repos already pushed were put back" in line
    assert f.remote_state() == before

    kept = cli(f, "promote", "dev", "stg", "--yes", "--jobs", "1", "--keep-partial", "--json")
    assert kept.returncode == 1, str(kept)
    outcome = kept.json()["outcome"]
    assert outcome["state"] == "partial"
    assert {r["repo"]: r["result"] for r in outcome["repos"]} == {"svc0": "pushed", "svc1": "rejected",
                                                                   "svc2": "pushed"}
    assert f"promote --resume {outcome['id']}" in kept.stderr

    hook.unlink()
    done = cli(f, "promote", "--resume", outcome["id"], "--yes")
    assert done.returncode == 0, str(done)
    assert all(f.sha(n, "stg") != before[n]["refs/heads/stg"] for n in f.names)
    assert len({t for n in f.names for t in f.tags(n)}) == 1, "the same tag name everywhere"
    assert "only a partial one can be resumed" in one_error(cli(f, "promote", "--resume", outcome["id"]), 2)


def test_a_partial_promotion_blocks_the_next_until_resumed_or_abandoned(fleet: Fleet) -> None:
    f = fleet
    for n in f.names:
        f.commit(n, "dev", {"x.txt": n})
    hook = _decline_pushes(f, "svc1")
    kept = cli(f, "promote", "dev", "stg", "--yes", "--jobs", "1", "--keep-partial", "--json")
    partial = kept.json()["outcome"]["id"]
    assert "--abandon" in kept.stderr
    hook.unlink()
    after_partial = f.remote_state()

    blocked = one_error(cli(f, "promote", "dev", "stg", "--yes"), 1)
    assert f"{partial} (promote dev → stg) is partial (2 repo(s) already pushed: svc0, svc2)" in blocked
    assert f"promote --resume {partial}" in blocked and f"promote --abandon {partial}" in blocked
    assert f.remote_state() == after_partial, "a refused promotion moved something"
    assert cli(f, "promote", "stg", "prod", "--yes").returncode == 0, "other envs are not blocked"
    after_partial = f.remote_state()

    assert "--reason goes with --abandon" in one_error(cli(f, "promote", "dev", "stg", "--reason", "x"), 2)
    gave_up = cli(f, "promote", "--abandon", partial, "--reason", "svc1 is being rewritten", "--json")
    assert gave_up.returncode == 0, str(gave_up)
    assert gave_up.json()["abandoned"] == {"id": partial, "kind": "promote", "previous_state": "partial",
                                           "state": "abandoned", "pushed": ["svc0", "svc2"], "not_pushed": ["svc1"]}
    assert f.remote_state() == after_partial, "abandoning changes no repo"
    record = cli(f, "history", "--promotions", "--json").json()["promotions"]
    row = next(p for p in record if p["id"] == partial)
    assert row["state"] == "abandoned" and "svc1 is being rewritten" in row["detail"] and "svc0, svc2" in row["detail"]
    assert "only a partial one can be resumed" in one_error(cli(f, "promote", "--resume", partial), 2)
    assert "only an unfinished one" in one_error(cli(f, "promote", "--abandon", partial), 2)

    res = cli(f, "promote", "dev", "stg", "--yes", "--json")          # the next one goes ahead
    assert res.returncode == 0 and res.json()["outcome"]["state"] == "completed", str(res)
    assert res.json()["outcome"]["changed"]["stg"].keys() == {"svc1"}


def test_rollback_to_tag_freeze_and_unfreeze(fleet: Fleet) -> None:
    f = fleet
    d = Driver(f)
    f.commit("svc0", "stg", {"app.txt": "v2\n"})
    good_tag = d.promote("stg", "prod").repos[0].tag or ""
    good_tree = f.tree("svc0", f.sha("svc0", "main"))
    f.commit("svc0", "stg", {"app.txt": "v3\n"})
    d.promote("stg", "prod")

    rb = cli(f, "rollback", "--env", "prod", "--to", good_tag, "--yes", "--no-deploy", "--json")
    assert rb.returncode == 0, str(rb)
    rb_id = rb.json()["outcome"]["id"]
    assert f.tree("svc0", f.sha("svc0", "main")) == good_tree

    f.commit("svc0", "stg", {"fix.txt": "the fix\n"})
    frozen = cli(f, "promote", "stg", "prod", "--yes")
    assert f"prod is frozen by {rb_id} (rolled back to {good_tag}" in one_error(frozen, 1)
    assert "shipyard unfreeze --env prod" in frozen.stderr
    un = cli(f, "unfreeze", "--env", "prod")
    assert un.returncode == 0 and f"prod unfrozen (was frozen by {rb_id})" in un.stdout
    assert d.prepare("stg", "prod").to_push() == ["svc0"]
    d.store.close()


def test_repos_commands(fleet: Fleet) -> None:
    f = fleet
    f.write_config(groups={"svc0": ["backend"], "svc1": ["backend"], "svc2": ["frontend"]})
    f.commit("svc0", "main", {"new.txt": "n"})
    f.commit("svc2", "dev", {"d.txt": "d"})

    fetched = cli(f, "repos", "fetch", "--json")
    assert fetched.returncode == 0, str(fetched)
    assert fetched.json()["ok"] == ["svc0", "svc2"] and fetched.json()["nothing"] == ["svc1"]

    status = cli(f, "repos", "status", "--json").json()["repos"]
    assert [r["branch"] for r in status] == ["main"] * 3
    assert status[0]["envs"]["prod"]["behind"] == 1 and status[2]["envs"]["dev"]["behind"] == 1

    pulled = cli(f, "repos", "pull", "--group", "backend")
    assert pulled.returncode == 0, str(pulled)
    assert "1 ok, 1 nothing to do (svc1)" in pulled.stdout
    assert git(f.clones["svc0"], "rev-parse", "HEAD") == f.sha("svc0", "main")

    (f.clones["svc1"] / "local.txt").write_text("l")
    git(f.clones["svc1"], "add", "local.txt")
    git(f.clones["svc1"], "commit", "--quiet", "-m", "local work")
    pushed = cli(f, "repos", "push", "--json")
    assert pushed.json()["ok"] == ["svc1"] and pushed.json()["nothing"] == ["svc0", "svc2"]
    assert f.sha("svc1", "main") == git(f.clones["svc1"], "rev-parse", "HEAD")

    checkout = cli(f, "repos", "checkout", "--branch", "dev", "--only", "svc0,svc2")
    assert checkout.returncode == 0, str(checkout)
    assert git(f.clones["svc2"], "rev-parse", "--abbrev-ref", "HEAD") == "dev"
    assert git(f.clones["svc1"], "rev-parse", "--abbrev-ref", "HEAD") == "main"

    ran = cli(f, "repos", "exec", "--jobs", "1", "--fail-fast", "--",
              "sh", "-c", 'test "$SHIPYARD_REPO" != svc1 && echo "hi $SHIPYARD_REPO"')
    assert one_error(ran, 1) == "error: exec: 1 of 3 repos failed (svc1)"
    assert "hi svc0" in ran.stdout and "hi svc2" not in ran.stdout
    assert "1 ok, 1 failed (svc1), 1 not started (svc2)" in ran.stdout
