"""Release targets as data: the site's upload rules (types, cache globs, what changed), the command
target's argv (placeholders inside one argument, hostile values included), the config refusals, and the
all-at-once plan."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from shipyard.config.release_targets import CommandTarget, StaticTarget
from shipyard.domain.plan import Activate, Analyze, Prepare, RunHook, WaitHealthy
from shipyard.strategies import PlanInput
from shipyard.strategies.release import release_plan, restore_plan
from shipyard.targets.command import command_argv
from shipyard.targets.site import Rules, cache_control, content_type, extra, matches, scan, to_upload

RULES = Rules(("assets/*", "*.[0-9a-f]{8}.*"), ("*.html",), "IMM", "NOC", "DEF")


@pytest.mark.parametrize(("key", "expected"), [
    ("index.html", "text/html; charset=utf-8"), ("a/b.js", "text/javascript; charset=utf-8"),
    ("x.CSS", "text/css; charset=utf-8"), ("i.svg", "image/svg+xml"), ("f.woff2", "font/woff2"),
    ("d.json", "application/json"), ("a.js.map", "application/json"), ("m.wasm", "application/wasm"),
    ("blob", "application/octet-stream")])
def test_content_types(key: str, expected: str) -> None:
    assert content_type(key) == expected


@pytest.mark.parametrize(("key", "expected"), [
    ("index.html", "NOC"), ("about/index.html", "NOC"), ("assets/deep/x.png", "IMM"), ("app.1a2b3c4d.js", "IMM"),
    ("js/app.1a2b3c4d.js", "IMM"), ("app.1a2b3c4.js", "DEF"), ("app.1A2B3C4D.js", "DEF"), ("robots.txt", "DEF"),
    ("xassets/y.js", "DEF")])
def test_cache_rules_first_match_wins(key: str, expected: str) -> None:
    assert cache_control(key, RULES) == expected


def test_glob_counts_and_bad_globs() -> None:
    assert matches("a.0123abcd.css", "*.[0-9a-f]{8}.*") and not matches("a.0123abc.css", "*.[0-9a-f]{8}.*")
    assert matches("a.b", "a?b") and not matches("a+b", "a.b")      # '.' is literal, '?' is one character
    with pytest.raises(ValueError):
        matches("x", "[abc")
    with pytest.raises(ValueError):
        matches("x", "{x}")


def test_only_changed_files_are_uploaded_and_extra_keys_found(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.txt").write_text("one")
    (tmp_path / "two.html").write_text("two")
    files = scan(tmp_path, RULES)
    assert [f.key for f in files] == ["a/one.txt", "two.html"]
    same = {f.key: (f.size, f.md5) for f in files}
    assert to_upload(files, same) == []
    changed = {**same, "two.html": (3, "0" * 32), "gone.css": (1, "x")}
    assert [f.key for f in to_upload(files, changed)] == ["two.html"]
    assert extra(files, changed) == ["gone.css"]


def test_scan_does_not_follow_a_symlink_out_of_the_build(tmp_path: Path) -> None:
    secret = tmp_path / "outside.txt"
    secret.write_text("not for the bucket")
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("hi")
    (site / "leak.txt").symlink_to(secret)
    assert [f.key for f in scan(site, RULES)] == ["index.html"]


@pytest.mark.parametrize("hostile", ["a b", "x; rm -rf /", "$(id)", "`id`", "'\"", "--flag=1 --other", "\n"])
def test_placeholders_stay_inside_their_argument(hostile: str) -> None:
    values = {"sha": hostile, "revision": hostile, "env": hostile, "service": hostile}
    argv = command_argv("cdk deploy {service}-{env} --context sha={sha} '{revision} x'", values)
    assert argv == ["cdk", "deploy", f"{hostile}-{hostile}", "--context", f"sha={hostile}", f"{hostile} x"]


def _static(**kw: object) -> StaticTarget:
    return StaticTarget.model_validate({"type": "static", "bucket": "gli-web", "distribution_id": "E2QWRUHAPOMQZL",
                                        **kw})


@pytest.mark.parametrize(("field", "value", "message"), [
    ("bucket", "", "bucket is empty"), ("bucket", "  ", "bucket is empty"), ("bucket", "Not_A_Bucket", "S3 bucket"),
    ("bucket", "${secret:WEB_BUCKET}", "S3 bucket"), ("distribution_id", "", "distribution_id is empty"),
    ("distribution_id", "e2qw/x", "distribution id"), ("prefix", "releases/", "{sha}"),
    ("prefix", "/releases/{sha}/", "relative"), ("prefix", "../{sha}/", "relative")])
def test_static_config_refuses(field: str, value: str, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        _static(**{field: value})
    assert message in str(err.value)


def test_static_prefix_gets_its_slash() -> None:
    assert _static(prefix="web/{sha}").prefix_of("abc") == "web/abc/"


@pytest.mark.parametrize(("command", "message"), [
    ("cdk deploy {stack}", "unknown placeholder {stack}"), ("cdk 'unbalanced", "cannot split"), ("  ", "empty"),
    ("tf apply -var token=${secret:TF_TOKEN}", "a secret never goes into a command's arguments")])
def test_command_config_refuses(command: str, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        CommandTarget.model_validate({"type": "command", "deploy": command})
    assert message in str(err.value)


def test_release_plan_wraps_one_activate_in_the_hooks() -> None:
    hooks = frozenset({"before_install", "after_install", "before_traffic", "application_stop",
                       "application_start", "validate_service", "after_traffic"})
    plan = release_plan(PlanInput(current=0, desired=0, bake=30, hooks=hooks))
    names = [s.hook if isinstance(s, RunHook) else s.kind for s in plan.steps]
    assert names == ["before_install", "prepare", "after_install", "before_traffic", "application_stop",
                     "activate", "application_start", "wait_healthy", "validate_service", "after_traffic", "analyze"]
    assert plan.strategy == "all_at_once" and isinstance(plan.steps[-1], Analyze)
    assert release_plan(PlanInput(current=0, desired=0)).steps == (Prepare(), Activate(), WaitHealthy())


def test_restore_plan_builds_only_when_the_target_needs_the_release() -> None:
    assert restore_plan(False).steps == (Activate(restore=True), WaitHealthy())
    assert restore_plan(True).steps == (Prepare(), Activate(restore=True), WaitHealthy())


def test_a_traffic_strategy_on_a_release_target_is_refused() -> None:
    from shipyard.config.service import Service

    base = {"repo": "web", "kind": "static", "publish_dir": "dist",
            "deploy": {"target": {"type": "static", "bucket": "gli-web", "distribution_id": "E1"}}}
    assert Service.model_validate(base).deploy.target.type == "static"
    with pytest.raises(ValidationError) as err:
        Service.model_validate({**base, "deploy": {**base["deploy"], "strategy": {"type": "canary", "steps": [
            {"weight": 10}]}}})
    assert "deploys all at once" in str(err.value)
    cmd = Service.model_validate({"repo": "infra", "deploy": {"target": {"type": "command", "deploy": "cdk deploy"},
                                                              "strategy": {"type": "all_at_once"}}})
    assert cmd.run is None
