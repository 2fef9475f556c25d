"""The GitHub Actions generator (shipyard.ci.github): what the workflows contain, that actionlint accepts
every one of them, that the output is deterministic, and that hostile values stay inert.

Configs are real shipyard.yaml text through the real loader: the demo workspace's, and one shaped like
GLI's (four services in four repos, three environments, prod behind approvals) with TPT's Gradle API.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from shipyard.ci import github
from shipyard.ci.github import Options, render
from shipyard.config import Config, check_text
from shipyard.demo.workspace import render_config
from shipyard.errors import UsageError
from shipyard.testing.actionlint import actionlint_binary, lint

GLI = """\
project: gli
timezone: Asia/Seoul
repos:
  api: {url: "git@github.com:org/gli_api-server.git"}
  ws: {url: "git@github.com:org/gli_websocket.git"}
  admin: {url: "git@github.com:org/gli_admin-frontend.git"}
  user: {url: "git@github.com:org/gli_user-frontend.git"}
  tpt: {url: "git@github.com:org/tpt-api.git"}
environments:
  dev:  {branch: dev}
  stg:  {branch: stg, promote_from: dev, tag: "stg-deploy-{ts}"}
  prod: {branch: main, promote_from: stg, tag: "deploy-{ts}", confirm: twice,
         approvals: {required: 2, approvers: [lead, devops], wait: 5m}}
services:
  api:
    repo: api
    build: pip install -r requirements.txt && python manage.py collectstatic --noinput
    run: gunicorn config.wsgi --bind 127.0.0.1:{port}
    migrate: python manage.py migrate
    env: {DJANGO_SETTINGS_MODULE: config.settings.prod, SECRET_KEY: "${secret:DJANGO_SECRET_KEY}"}
    requires_env: [SECRET_KEY, DATABASE_URL, JWT_PRIVATE_KEY]
    health: {type: http, path: /health/}
    hooks: {validate_service: "curl -fsS http://$HEALTH_HOST/health/"}
    deploy: {bake: 2m}
  ws:
    repo: ws
    build: npm ci && npm run build
    run: node dist/server.js
    env: {WS_PORT: "8080"}
    requires_env: [JWT_SECRET]
  admin-web: {repo: admin, kind: static, build: npm ci && npm run build, publish_dir: dist}
  user-web: {repo: user, kind: static, build: npm ci && npm run build, publish_dir: dist}
  tpt-api:
    repo: tpt
    build: ./gradlew clean build -x test
    run: java -jar build/libs/app.jar --server.port={port}
"""


def load(text: str) -> Config:
    config, problems = check_text(text)
    assert config is not None, problems
    return config


def demo_config(tmp_path: Path) -> Config:
    return load(render_config(tmp_path, {"api": tmp_path / "api", "web": tmp_path / "web"},
                              {"api": tmp_path / "api.git", "web": tmp_path / "web.git"},
                              api_port=18080, web_port=18081))


@pytest.fixture(scope="module")
def actionlint() -> str:
    binary = actionlint_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("actionlint is missing: install the test extras (pip install -e '.[dev]')")
        pytest.skip("actionlint is not installed (the test extras bring it)")
    return binary


def assert_lints(actionlint: str, tmp_path: Path, files: dict[str, str]) -> None:
    assert files, "nothing was generated"
    out = tmp_path / "lint" / ".github" / "workflows"
    out.mkdir(parents=True)
    for name, content in files.items():
        (out / name).write_text(content, encoding="utf-8")
    result = lint(actionlint, sorted(out.iterdir()))
    assert result.ok, f"actionlint:\n{result.output}"


def parsed(content: str) -> dict[str, Any]:
    doc = yaml.safe_load(content)
    assert isinstance(doc, dict)
    doc["on"] = doc.pop("on", None) if "on" in doc else doc.pop(True)      # YAML 1.1 reads a bare on: as True
    return doc


# --- actionlint over every generated file ----------------------------------------------------------------

def test_actionlint_rejects_a_broken_workflow(actionlint: str, tmp_path: Path) -> None:
    """The validator is not vacuous: the generated text with one job's `needs` pointing nowhere fails."""
    content = render(load(GLI)).files["shipyard-api.yml"].replace("needs:\n    - build", "needs:\n    - nope", 1)
    (tmp_path / "bad.yml").write_text(content, encoding="utf-8")
    result = lint(actionlint, [tmp_path / "bad.yml"])
    assert not result.ok and "nope" in result.output


@pytest.mark.parametrize("combined", [False, True])
def test_demo_workflows_pass_actionlint(actionlint: str, tmp_path: Path, combined: bool) -> None:
    config = demo_config(tmp_path)
    for envs in ((), ("dev", "stg", "prod")):
        files = render(config, Options(envs=envs, combined=combined)).files
        assert_lints(actionlint, tmp_path / f"{combined}-{len(envs)}", files)


@pytest.mark.parametrize("combined", [False, True])
def test_gli_like_workflows_pass_actionlint(actionlint: str, tmp_path: Path, combined: bool) -> None:
    rendered = render(load(GLI), Options(combined=combined))
    expected = 1 if combined else 5
    assert len(rendered.files) == expected
    assert_lints(actionlint, tmp_path, rendered.files)


# --- what is in them --------------------------------------------------------------------------------------

def test_one_file_per_service_with_stages_then_a_deploy_per_environment() -> None:
    rendered = render(load(GLI))
    assert sorted(rendered.files) == [f"shipyard-{s}.yml" for s in
                                      ("admin-web", "api", "tpt-api", "user-web", "ws")]
    doc = parsed(rendered.files["shipyard-api.yml"])
    assert doc["on"] == {"push": {"branches": ["dev", "stg", "main"]},
                         "pull_request": {"branches": ["dev", "stg", "main"]}}
    assert doc["permissions"] == {"contents": "read"}
    assert list(doc["jobs"]) == ["build", "deploy-dev", "deploy-stg", "deploy-prod"]
    build = doc["jobs"]["build"]
    assert build["steps"][-1]["run"] == ("pip install -r requirements.txt && python manage.py collectstatic "
                                        "--noinput")
    # Plain variables reach the CI build; secrets stay on the server (never in a workflow).
    assert build["env"]["DJANGO_SETTINGS_MODULE"] == "config.settings.prod"
    assert "SECRET_KEY" not in build["env"]
    assert "migrate" not in str(doc["jobs"])            # migrate runs on the server, once per deployment
    prod = doc["jobs"]["deploy-prod"]
    assert prod["needs"] == ["build"]
    assert prod["environment"] == {"name": "prod"}
    assert prod["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert prod["concurrency"] == {"group": "shipyard-deploy/api/prod", "cancel-in-progress": False}
    assert prod["permissions"] == {}
    deploy = prod["steps"][-1]
    assert 'shipyard --server "$SHIPYARD_SERVER" deploy "$SHIPYARD_SERVICE" --env "$SHIPYARD_DEPLOY_ENV" ' \
           '--rev "$GITHUB_SHA"' in deploy["run"]
    assert deploy["env"] == {"SHIPYARD_SERVER": "${{ vars.SHIPYARD_SERVER }}",
                             "SHIPYARD_TOKEN": "${{ secrets.SHIPYARD_TOKEN }}",
                             "SHIPYARD_SERVICE": "api", "SHIPYARD_DEPLOY_ENV": "prod"}
    # Build 30m + bake 2m + the approvals' 5m wait + the deploy's own margin.
    assert prod["timeout-minutes"] == 30 + 2 + 5 + github.DEPLOY_MINUTES
    assert doc["jobs"]["deploy-dev"]["timeout-minutes"] == 30 + 2 + github.DEPLOY_MINUTES


def test_every_job_has_a_timeout_and_every_action_is_pinned_to_a_sha() -> None:
    for content in render(load(GLI), Options(combined=True)).files.values():
        for job in parsed(content)["jobs"].values():
            assert 0 < job["timeout-minutes"] <= github.MAX_MINUTES
            for step in job["steps"]:
                if "uses" in step:
                    _, _, ref = step["uses"].partition("@")
                    assert len(ref) == 40 and all(c in "0123456789abcdef" for c in ref), step["uses"]


def test_auto_deploy_environments_get_no_deploy_job_unless_asked(tmp_path: Path) -> None:
    """The demo's dev and stg are auto_deploy: `shipyard serve` deploys them; CI deploying too would
    deploy every commit twice."""
    config = demo_config(tmp_path)
    rendered = render(config)
    assert [s.env for s in rendered.skipped] == ["dev", "stg"]
    jobs = parsed(rendered.files["shipyard-web.yml"])["jobs"]
    assert list(jobs) == ["build", "deploy-prod"]
    assert list(parsed(rendered.files["shipyard-api.yml"])["jobs"]) == ["deploy-prod"]      # no build: no stage
    asked = render(config, Options(envs=("stg",)))
    assert list(parsed(asked.files["shipyard-web.yml"])["jobs"]) == ["build", "deploy-stg"]
    assert asked.skipped == []


def test_combined_holds_every_service_with_prefixed_jobs() -> None:
    rendered = render(load(GLI), Options(combined=True, services=("ws", "api")))
    assert list(rendered.files) == ["shipyard.yml"] and rendered.services["shipyard.yml"] == ("ws", "api")
    jobs = parsed(rendered.files["shipyard.yml"])["jobs"]
    assert list(jobs)[:5] == ["ws-build", "ws-deploy-dev", "ws-deploy-stg", "ws-deploy-prod", "api-build"]
    assert jobs["api-deploy-prod"]["needs"] == ["api-build"]
    assert jobs["ws-deploy-dev"]["concurrency"]["group"] == "shipyard-deploy/ws/dev"


def test_output_is_deterministic_and_its_hash_follows_its_inputs() -> None:
    config = load(GLI)
    first, again = render(config).files, render(load(GLI)).files
    assert first == again
    edited = render(load(GLI.replace("npm ci && npm run build\n    run: node", "npm ci\n    run: node"))).files
    changed = [n for n in first if first[n] != edited[n]]
    assert changed == ["shipyard-ws.yml"]
    assert github.header_hash(first["shipyard-ws.yml"]) != github.header_hash(edited["shipyard-ws.yml"])
    assert first["shipyard-api.yml"].startswith(github.MARKER + "\n" + github.HASH_PREFIX)
    # The options are inputs too.
    other = render(config, Options(runs_on="self-hosted")).files["shipyard-api.yml"]
    assert github.header_hash(other) != github.header_hash(first["shipyard-api.yml"])


def test_unknown_service_or_environment_is_one_line() -> None:
    with pytest.raises(UsageError, match="unknown service 'nope'"):
        render(load(GLI), Options(services=("nope",)))
    with pytest.raises(UsageError, match="unknown environment 'qa'"):
        render(load(GLI), Options(envs=("qa",)))


# --- the `pipeline:` stages another branch adds (read by name, whatever their shape) ------------------------

@pytest.mark.parametrize("pipeline", [
    ["test", "build", "scan", "migrate"],
    [{"name": "test", "command": "pytest -q", "timeout": 120}, {"name": "build"},
     {"name": "scan", "command": "pip-audit -r requirements.txt", "timeout": "5m"},
     {"name": "migrate", "command": "python manage.py migrate"}],
    {"test": "pytest -q", "build": {"timeout": 900}, "scan": SimpleNamespace(command="pip-audit", timeout=300),
     "migrate": "python manage.py migrate"},
])
def test_pipeline_stages_become_chained_jobs_without_migrate(pipeline: Any) -> None:
    service = SimpleNamespace(build="make", migrate="python manage.py migrate", test="pytest -q",
                              scan="pip-audit", pipeline=pipeline)
    got = github.stages(service)
    assert [s.name for s in got] == ["test", "build", "scan"]
    assert [s.command.split()[0] for s in got] == ["pytest", "make", "pip-audit"]
    assert all(s.timeout > 0 for s in got)


def test_a_config_with_pipeline_renders_chained_stage_jobs(actionlint: str, tmp_path: Path) -> None:
    config = load(GLI)
    object.__setattr__(config.services["api"], "pipeline", [
        {"name": "test", "command": "pytest -q", "timeout": 120}, {"name": "build"},
        {"name": "scan", "command": "pip-audit -r requirements.txt"}, {"name": "migrate"}])
    rendered = render(config, Options(services=("api",)))
    jobs = parsed(rendered.files["shipyard-api.yml"])["jobs"]
    assert list(jobs) == ["test", "build", "scan", "deploy-dev", "deploy-stg", "deploy-prod"]
    assert jobs["build"]["needs"] == ["test"] and jobs["scan"]["needs"] == ["build"]
    assert jobs["deploy-prod"]["needs"] == ["scan"]
    assert jobs["test"]["timeout-minutes"] == 2 + github.JOB_SETUP_MINUTES
    assert_lints(actionlint, tmp_path, rendered.files)


# --- hostile values ---------------------------------------------------------------------------------------

HOSTILE_COMMAND = ("echo \"it's\" 'a \"quote\"' && printf '%s\\n' \"$HOME\" # not a YAML comment\n"
                   "key: value\n- item\n*alias &anchor {a: b} [x] | > % @ `tick`\ttab   ")
HOSTILE_BRANCHES = ["it's-\"quoted\"", "release/v1+2", "!bang", "feat#1", "ünïcode", "yes", "null"]


def hostile_config() -> Config:
    envs = {f"e{i}": {"branch": b} for i, b in enumerate(HOSTILE_BRANCHES)}
    services = {
        name: {"repo": "r", "run": "python app.py", "build": HOSTILE_COMMAND,
               "env": {"YES": "yes", "ON": "on", "OCTAL": "0123", "TILDE": "~", "NULL": "null",
                       "QUOTED": '"quoted"', "COLON": "a: b", "SECRET": "${secret:S}"}}
        for name in ("api.v2", "9lives", "a_b", "a.b")
    }
    return Config.model_validate({"project": "x", "repos": {"r": {"url": "u"}}, "environments": envs,
                                  "services": services})


@pytest.mark.parametrize("combined", [False, True])
def test_hostile_names_commands_and_branches_stay_data(actionlint: str, tmp_path: Path, combined: bool) -> None:
    rendered = render(hostile_config(), Options(combined=combined))
    assert_lints(actionlint, tmp_path, rendered.files)
    ids: list[str] = []
    for content in rendered.files.values():
        doc = parsed(content)
        assert [github.branch_filter(b) for b in HOSTILE_BRANCHES] == doc["on"]["push"]["branches"]
        for jid, job in doc["jobs"].items():
            ids.append(jid)
            if "deploy" not in job["name"]:
                assert job["steps"][-1]["run"] == HOSTILE_COMMAND        # byte for byte, through the YAML
                assert job["env"]["YES"] == "yes" and job["env"]["OCTAL"] == "0123"
                assert job["env"]["NULL"] == "null" and job["env"]["COLON"] == "a: b"
                assert "SECRET" not in job["env"]
        conditions = [job["if"] for job in doc["jobs"].values() if "if" in job]
        assert "github.ref == 'refs/heads/it''s-\"quoted\"'" in conditions[0]
    # A repeated key would be folded away by the YAML parser: every job of every service is there (a.b
    # and a_b never share an id in the combined file).
    assert len(ids) == 4 * (1 + len(HOSTILE_BRANCHES))
    if not combined:
        assert {"shipyard-a.b.yml", "shipyard-a_b.yml", "shipyard-9lives.yml"} <= set(rendered.files)


@pytest.mark.parametrize("where, value", [
    ("build", "echo ${{ secrets.SHIPYARD_TOKEN }}"),
    ("env", "${{ github.token }}"),
    ("branch", "main${{ 1 }}"),
])
def test_a_github_expression_in_a_value_is_refused(where: str, value: str) -> None:
    service: dict[str, Any] = {"repo": "r", "run": "x", "build": "make"}
    branch = "main"
    if where == "build":
        service["build"] = value
    elif where == "env":
        service["env"] = {"TOKEN": value}
    else:
        branch = value
    config = Config.model_validate({"project": "x", "repos": {"r": {"url": "u"}},
                                    "environments": {"prod": {"branch": branch}}, "services": {"api": service}})
    with pytest.raises(UsageError) as caught:
        render(config)
    message = str(caught.value)
    assert "\n" not in message and "expression" in message and ("'${{'" in message)


@pytest.mark.parametrize("branch", ["has space", "a..b", "x}}y", "new\nline", "end.lock", "-dash", "a:b"])
def test_a_branch_git_would_not_allow_is_refused(branch: str) -> None:
    config = Config.model_validate({"project": "x", "repos": {"r": {"url": "u"}},
                                    "environments": {"prod": {"branch": branch}},
                                    "services": {"api": {"repo": "r", "run": "x"}}})
    with pytest.raises(UsageError, match="not a branch name git allows"):
        render(config)


def test_hostile_options_are_refused() -> None:
    with pytest.raises(UsageError, match="--install"):
        render(load(GLI), Options(install="shipyard ${{ github.token }}"))
    with pytest.raises(UsageError, match="--runs-on"):
        render(load(GLI), Options(runs_on="${{ github.actor }}"))
