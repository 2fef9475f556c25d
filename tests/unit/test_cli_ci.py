"""`shipyard ci github` and `shipyard ci check` as a user runs them: the real command in a subprocess,
real files in a directory, and actionlint over what was written.

The drift check is what CI enforces, so each way of drifting is tested for its exit code and for the
one line that names the file: a clean tree, an edited config, a hand-edited workflow, a missing one, a
service removed (an extra file), and a file of the user's own where ours belongs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from shipyard.demo.workspace import render_config
from shipyard.testing.actionlint import actionlint_binary, lint
from shipyard.testing.cli import CliResult, run_cli


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.update(NO_COLOR="1", TERM="dumb", COLUMNS="200", PYTHONUNBUFFERED="1")
    return env


def ci(root: Path, *args: str) -> CliResult:
    return run_cli(root, "ci", *args, env=cli_env(), timeout=60)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    text = render_config(tmp_path, {"api": tmp_path / "api", "web": tmp_path / "web"},
                         {"api": tmp_path / "api.git", "web": tmp_path / "web.git"}, api_port=18080, web_port=18081)
    (tmp_path / "shipyard.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def workflows(root: Path) -> Path:
    return root / ".github" / "workflows"


def test_write_lint_and_check_in_step(project: Path) -> None:
    wrote = ci(project, "github", "--env", "dev", "--env", "prod", "--json")
    assert wrote.returncode == 0, wrote
    summary = wrote.json()
    assert summary["out"] == str(workflows(project))
    assert [(f["path"], f["action"], f["services"]) for f in summary["files"]] == [
        ("shipyard-api.yml", "written", ["api"]), ("shipyard-web.yml", "written", ["web"])]
    binary = actionlint_binary()
    if binary is None:
        assert not os.environ.get("CI"), "actionlint is missing: install the test extras"
    else:
        result = lint(binary, sorted(workflows(project).iterdir()))
        assert result.ok, result.output
    before = {p.name: p.stat().st_mtime_ns for p in workflows(project).iterdir()}
    again = ci(project, "github", "--env", "dev", "--env", "prod")
    assert again.returncode == 0 and "unchanged" in again.stdout, again
    assert before == {p.name: p.stat().st_mtime_ns for p in workflows(project).iterdir()}   # not rewritten
    check = ci(project, "check", "--env", "dev", "--env", "prod")
    assert check.returncode == 0, check
    assert "2 workflow file(s) in step" in check.stdout
    as_json = ci(project, "check", "--env", "dev", "--env", "prod", "--json")
    assert as_json.returncode == 0
    assert as_json.json() == {"out": str(workflows(project)), "ok": True, "drift": 0,
                              "files": [{"path": "shipyard-api.yml", "state": "ok"},
                                        {"path": "shipyard-web.yml", "state": "ok"}]}


def test_check_before_anything_was_written_counts_missing_files(project: Path) -> None:
    check = ci(project, "check", "--json")
    assert check.returncode == 1
    assert check.json()["drift"] == 2
    assert {f["state"] for f in check.json()["files"]} == {"missing"}


def test_each_kind_of_drift_is_exit_1_with_a_line_naming_the_file(project: Path) -> None:
    assert ci(project, "github").returncode == 0
    config = project / "shipyard.yaml"
    original = config.read_text(encoding="utf-8")

    # The config changed: only the service whose inputs changed is stale.
    config.write_text(original.replace("build.py", "build.py --minify"), encoding="utf-8")
    check = ci(project, "check")
    assert check.returncode == 1, check
    assert check.stdout.splitlines() == [
        f"{workflows(project) / 'shipyard-web.yml'}: stale: shipyard.yaml (or the options) changed since it "
        "was generated"]
    assert "1 of 2 workflow file(s) out of step" in check.stderr
    config.write_text(original, encoding="utf-8")
    assert ci(project, "check").returncode == 0

    # A workflow edited by hand.
    api = workflows(project) / "shipyard-api.yml"
    pristine = api.read_text(encoding="utf-8")
    api.write_text(pristine.replace("timeout-minutes: 45", "timeout-minutes: 5"), encoding="utf-8")
    check = ci(project, "check")
    assert check.returncode == 1
    assert check.stdout.splitlines() == [f"{api}: edited by hand since it was generated"]

    # A missing one.
    api.unlink()
    check = ci(project, "check")
    assert check.returncode == 1
    assert check.stdout.splitlines() == [f"{api}: missing (run `shipyard ci github`)"]
    assert ci(project, "github").returncode == 0 and api.read_text(encoding="utf-8") == pristine

    # A service removed from the config: its file is extra, and `ci github` removes it.
    config.write_text(original.split("  web:\n")[0], encoding="utf-8")
    check = ci(project, "check", "--json")
    assert check.returncode == 1
    assert {f["path"]: f["state"] for f in check.json()["files"]} == {"shipyard-api.yml": "ok",
                                                                       "shipyard-web.yml": "extra"}
    wrote = ci(project, "github", "--json")
    assert {f["path"]: f["action"] for f in wrote.json()["files"]} == {"shipyard-api.yml": "unchanged",
                                                                        "shipyard-web.yml": "removed"}
    assert not (workflows(project) / "shipyard-web.yml").exists()
    assert ci(project, "check").returncode == 0


def test_the_users_own_workflows_are_left_alone(project: Path) -> None:
    workflows(project).mkdir(parents=True)
    own = workflows(project) / "lint.yml"
    own.write_text("name: lint\non: push\njobs: {}\n", encoding="utf-8")
    assert ci(project, "github").returncode == 0
    assert ci(project, "check").returncode == 0
    assert own.read_text(encoding="utf-8") == "name: lint\non: push\njobs: {}\n"

    # One of theirs where ours belongs: drift for check, and a refusal (nothing written) for github.
    (workflows(project) / "shipyard-api.yml").write_text("name: mine\n", encoding="utf-8")
    check = ci(project, "check")
    assert check.returncode == 1 and "shipyard-api.yml: exists but was not generated by shipyard" in check.stdout
    web_before = (workflows(project) / "shipyard-web.yml").read_text(encoding="utf-8")
    refused = ci(project, "github", "--runs-on", "self-hosted")
    assert refused.returncode == 2, refused
    assert len(refused.error_lines) == 1 and "not generated by shipyard" in refused.error_lines[0]
    assert (workflows(project) / "shipyard-api.yml").read_text(encoding="utf-8") == "name: mine\n"
    assert (workflows(project) / "shipyard-web.yml").read_text(encoding="utf-8") == web_before


def test_one_service_and_combined_and_out(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere"
    wrote = ci(project, "github", "--service", "web", "--out", str(out), "--json")
    assert wrote.returncode == 0, wrote
    assert [p.name for p in out.iterdir()] == ["shipyard-web.yml"]
    # With --service, the other services' files are not this call's business (no "extra").
    assert ci(project, "github", "--service", "api", "--out", str(out)).returncode == 0
    assert ci(project, "check", "--service", "web", "--out", str(out)).returncode == 0
    assert ci(project, "check", "--out", str(out)).returncode == 0
    # Switching to one combined file: the per-service ones become extra and are removed.
    combined = ci(project, "github", "--combined", "--out", str(out), "--json")
    assert {f["path"]: f["action"] for f in combined.json()["files"]} == {
        "shipyard.yml": "written", "shipyard-api.yml": "removed", "shipyard-web.yml": "removed"}
    assert ci(project, "check", "--combined", "--out", str(out)).returncode == 0
    assert ci(project, "check", "--out", str(out)).returncode == 1


def test_hostile_and_unknown_values_are_one_line_and_exit_2(project: Path) -> None:
    config = project / "shipyard.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace(
        "build.py", "build.py --token '$${{ secrets.SHIPYARD_TOKEN }}'"), encoding="utf-8")
    refused = ci(project, "github")
    assert refused.returncode == 2, refused
    assert len(refused.error_lines) == 1
    assert "expression" in refused.error_lines[0] and "services.web.pipeline.build" in refused.error_lines[0]
    assert not workflows(project).exists()
    for args in (("--service", "nope"), ("--env", "qa")):
        bad = ci(project, "check", *args)
        assert bad.returncode == 2 and len(bad.error_lines) == 1 and "unknown" in bad.error_lines[0], bad


def test_json_of_ci_github_lists_what_was_left_out(project: Path) -> None:
    wrote = ci(project, "github", "--json")
    assert wrote.returncode == 0
    doc = json.loads(wrote.stdout)
    assert set(doc) == {"out", "files", "skipped"}
    assert [(s["env"], s["reason"].split(":")[0]) for s in doc["skipped"]] == [("dev", "auto_deploy"),
                                                                              ("stg", "auto_deploy")]
