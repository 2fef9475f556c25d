"""Config models: every rule and helper, starting from the sketch in DESIGN.md."""

from __future__ import annotations

import textwrap

import pytest
from pydantic import ValidationError

from shipyard.config import (
    BlueGreen,
    Canary,
    Config,
    EmailChannel,
    ExecCheck,
    HttpCheck,
    Rolling,
    TcpCheck,
    check_text,
)
from shipyard.errors import ConfigError, UnknownEnvironmentError, UnknownServiceError

DESIGN_SKETCH = """\
project: gli
timezone: Asia/Seoul            # for tag timestamps
state: sqlite:///.shipyard/state.db   # or postgresql+psycopg://...
repos:
  api: {url: git@github.com:org/gli_api-server.git, path: ../gli_api-server, groups: [backend]}
  web: {url: git@github.com:org/gli_user-frontend.git, path: ../gli_user-frontend, groups: [frontend]}
environments:
  dev:  {branch: dev, auto_deploy: true}
  stg:  {branch: stg, promote_from: dev, tag: "stg-deploy-{ts}", auto_deploy: true}
  prod: {branch: main, promote_from: stg, tag: "deploy-{ts}", confirm: twice,
         approvals: {required: 2, approvers: [lead, devops], wait: 5m}}
services:
  api:
    repo: api
    build: pip install -r requirements.txt
    run: gunicorn app.wsgi --bind 127.0.0.1:{port}
    migrate: python manage.py migrate          # once per deployment, before traffic
    requires_env: [SECRET_KEY, DATABASE_URL, JWT_PRIVATE_KEY]
    health: {type: http, path: /health/, interval: 2s, timeout: 1s, healthy_threshold: 2,
             unhealthy_threshold: 2, start_period: 10s}
    hooks: {before_install: ..., validate_service: ..., on_failure: ...}
    deploy:
      target: {type: local, instances: 3}
      router: {type: builtin, listen: 127.0.0.1:8000}
      strategy: {type: rolling, batch_size: 1, drain_timeout: 30s}
      bake: 2m
      alarms: [high_5xx, slow_p95]
  web:
    repo: web
    kind: static
    build: npm ci && npm run build
    publish_dir: dist
alarms:
  high_5xx: {metric: http_5xx_ratio, statistic: Average, period: 60s, evaluation_periods: 3,
             datapoints_to_alarm: 2, comparison: ">", threshold: 0.10, treat_missing_data: notBreaching}
  slow_p95: {metric: response_time, statistic: p95, comparison: GreaterThanThreshold, threshold: 2}
notifications:
  channels:
    alerts:      {type: slack, webhook: "${secret:SLACK_ALERTS_WEBHOOK}"}
    deployments: {type: slack, webhook: "${secret:SLACK_DEPLOYS_WEBHOOK}"}
    ops:         {type: email, to: [ops@example.com], smtp: {host: smtp.example.com, port: 587}}
  routes:
    - {events: ["deploy.failed", "rollback.*", "alarm.alarm"], to: [alerts, ops]}
    - {events: ["deploy.started", "deploy.succeeded", "approval.requested"], to: [deployments]}
secrets: {provider: local}      # local | env | aws-secretsmanager | aws-ssm
"""


def load(text: str) -> Config:
    config, found = check_text(textwrap.dedent(text), "shipyard.yaml", {})
    assert found == [], [str(p) for p in found]
    assert config is not None
    return config


def problems(text: str) -> list[ConfigError]:
    return check_text(textwrap.dedent(text), "shipyard.yaml", {})[1]


@pytest.fixture
def sketch() -> Config:
    return load(DESIGN_SKETCH)


def test_design_sketch_loads(sketch: Config) -> None:
    assert sketch.project == "gli" and sketch.timezone == "Asia/Seoul"
    assert list(sketch.environments) == ["dev", "stg", "prod"]
    prod = sketch.environments["prod"]
    assert prod.confirm == "twice" and prod.approvals is not None and prod.approvals.wait == 300
    assert sketch.environments["dev"].confirm == "once" and sketch.environments["dev"].tag is None
    api = sketch.services["api"]
    assert isinstance(api.health, HttpCheck) and api.health.path == "/health/"
    assert api.health.expected_status == [200] and api.health.deadline == 120
    assert isinstance(api.deploy.strategy, Rolling) and api.deploy.strategy.max_surge == 1
    assert api.deploy.bake == 120 and api.deploy.keep_previous == 300 and api.deploy.step_timeout == 600
    assert api.deploy.keep_releases == 5 and api.deploy.effective_ws_drain_timeout == 30
    assert api.hooks.before_install is not None and api.hooks.before_install.timeout == 300
    assert list(api.hooks.defined()) == ["before_install", "validate_service", "on_failure"]
    assert sketch.alarms["slow_p95"].comparison == ">" and sketch.alarms["slow_p95"].m_of_n == (1, 1)
    assert sketch.alarms["high_5xx"].m_of_n == (2, 3)
    ops = sketch.notifications.channels["ops"]
    assert isinstance(ops, EmailChannel) and ops.smtp.tls == "starttls"
    assert sketch.notifications.routes[1].events[0] == "deploy.started"
    assert sketch.secrets.provider == "local"
    assert sketch.state_url == f"sqlite:///{(sketch.root / '.shipyard' / 'state.db').resolve()}"   # anchored


def test_service_for_merges_everything(sketch: Config) -> None:
    api = sketch.service_for("api", "prod")
    assert (api.name, api.environment, api.branch, api.repo, api.instances) == ("api", "prod", "main", "api", 3)
    assert api.listen == "127.0.0.1:8000" and api.requires_env == ("SECRET_KEY", "DATABASE_URL", "JWT_PRIVATE_KEY")
    assert api.run_command(8123) == "gunicorn app.wsgi --bind 127.0.0.1:8123"
    assert api.repo_path.name == "gli_api-server"
    web = sketch.service_for("web", "dev")
    assert web.kind == "static" and web.listen is None and web.instances == 1
    assert web.run_command(9000) == "python -m http.server 9000 --bind 127.0.0.1 --directory dist"
    assert isinstance(web.health, HttpCheck) and web.health.path == "/"
    assert sketch.listen_for("api", "dev") == "127.0.0.1:8000"
    assert sketch.repos_in_group("frontend") == ["web"]


def test_unknown_names_raise_usage_errors(sketch: Config) -> None:
    with pytest.raises(UnknownServiceError, match="known: api, web"):
        sketch.service_for("apii", "dev")
    with pytest.raises(UnknownEnvironmentError, match="known: dev, stg, prod"):
        sketch.deploy_for("api", "qa")


OVERRIDES = """\
project: demo
repos: {api: {path: .}}
environments:
  dev: {branch: dev}
  stg: {branch: stg, promote_from: dev}
  prod: {branch: main, promote_from: stg}
services:
  api:
    repo: api
    run: "awk '{print $1}' --port {port} --name {instance} --env {env}"
    env: {A: "1", B: "2"}
    deploy:
      target: {instances: 2}
      router: {listen: {dev: "127.0.0.1:8100", stg: "127.0.0.1:8200"}}
    environments:
      prod: {instances: 4, env: {B: "prod"}, listen: "0.0.0.0:80"}
"""


def test_per_environment_overrides() -> None:
    config = load(OVERRIDES)
    dev, prod = config.service_for("api", "dev"), config.service_for("api", "prod")
    assert (dev.instances, dev.listen, dev.env) == (2, "127.0.0.1:8100", {"A": "1", "B": "2"})
    assert (prod.instances, prod.listen, prod.env) == (4, "0.0.0.0:80", {"A": "1", "B": "prod"})
    assert config.listen_for("api", "stg") == "127.0.0.1:8200"
    assert config.services["api"].deploy.target.instances == 2          # the model itself is untouched
    assert dev.run_command(81, instance="i1") == "awk '{print $1}' --port 81 --name i1 --env dev"
    assert isinstance(dev.health, TcpCheck)                              # default for a process service
    assert config.promotion_order() == ["dev", "stg", "prod"]


def test_override_and_listen_keys_must_be_environments() -> None:
    text = OVERRIDES.replace("stg: \"127.0.0.1:8200\"", "qa: \"127.0.0.1:8200\"")
    text = text.replace("prod: {instances", "prd: {instances")
    found = {p.key: p for p in problems(text)}
    assert set(found) == {"services.api.deploy.router.listen.qa", "services.api.environments.prd"}
    assert found["services.api.environments.prd"].line == 16


def test_listen_clash_between_services_of_one_environment() -> None:
    text = OVERRIDES + "  web:\n    repo: api\n    run: x\n    deploy: {router: {listen: {dev: '127.0.0.1:8100'}}}\n"
    (err,) = problems(text)
    assert err.key == "services.web.deploy.router.listen.dev" and err.line == 20
    assert "also the front address of api in dev" in err.message


@pytest.mark.parametrize(("listen", "words"), [("8000", "host:port"), ("127.0.0.1:70000", "host:port"),
                                               ("[1, 2]", "mapping")])
def test_bad_listen(listen: str, words: str) -> None:
    (err,) = problems(OVERRIDES.replace('{dev: "127.0.0.1:8100", stg: "127.0.0.1:8200"}', listen))
    assert err.key == "services.api.deploy.router.listen" and words in err.message


def test_promotion_rules() -> None:
    base = "project: p\nenvironments:\n  dev: {branch: dev, promote_from: %s}\n" \
        "  stg: {branch: stg, promote_from: dev}\n"
    (err,) = problems(base % "dev")
    assert "cannot promote from itself" in err.message and err.line == 3
    (err,) = problems(base % "stg")
    assert err.message == "promotion cycle: dev <- stg <- dev"


def test_defaults_merge_into_services() -> None:
    text = """\
    project: p
    repos: {r: {path: .}}
    environments: {dev: {branch: dev}}
    defaults:
      env: {LOG: info, REGION: kr}
      health: {path: /ready, interval: 5s}
      hooks: {on_failure: ./page.sh}
      deploy: {strategy: {type: blue_green, drain_timeout: 1m}, bake: 30s}
    services:
      a: {repo: r, run: x, env: {LOG: debug}}
      b: {repo: r, run: y, health: {type: tcp}, deploy: {strategy: {type: canary, steps: [{weight: 50}]}}}
    """
    config = load(text)
    a, b = config.services["a"], config.services["b"]
    assert a.env == {"LOG": "debug", "REGION": "kr"}
    assert isinstance(a.health, HttpCheck) and a.health.path == "/ready" and a.health.interval == 5
    assert isinstance(a.deploy.strategy, BlueGreen) and a.deploy.strategy.drain_timeout == 60
    assert a.deploy.bake == 30 and a.hooks.on_failure is not None and a.hooks.on_failure.command == "./page.sh"
    assert isinstance(b.health, TcpCheck) and isinstance(b.deploy.strategy, Canary) and b.deploy.bake == 30


def test_error_in_defaults_is_reported_once_at_its_line() -> None:
    text = "project: p\nrepos: {r: {path: .}}\nenvironments: {dev: {branch: dev}}\ndefaults:\n" \
        "  deploy: {strategy: {batch_size: 0}}\nservices:\n  a: {repo: r, run: x}\n  b: {repo: r, run: y}\n"
    (err,) = problems(text)
    assert err.key == "defaults.deploy.strategy.batch_size" and err.line == 5


def test_hooks_normalize() -> None:
    config = load(OVERRIDES + "    hooks:\n      before_install: make check\n"
                  "      validate_service: {command: ./smoke.sh, timeout: 2m}\n")
    hooks = config.services["api"].hooks
    assert hooks.before_install is not None and hooks.before_install.command == "make check"
    assert hooks.before_install.timeout == 300
    assert hooks.validate_service is not None and hooks.validate_service.timeout == 120
    (err,) = problems(OVERRIDES + "    hooks: {cleanup: {timeout: 1m}}\n")
    assert err.key == "services.api.hooks.cleanup.command" and err.message == "is required"
    (err,) = problems(OVERRIDES + "    hooks: {on_deploy: x}\n")
    assert "unknown key" in err.message and "application_stop" in err.message


@pytest.mark.parametrize(("health", "check"), [
    ("{path: /hz, expected_status: [200, 204]}",
     lambda c: isinstance(c, HttpCheck) and c.expected_status == [200, 204]),
    ("{type: http, expected_status: 301, host: api.local}",
     lambda c: c.expected_status == [301] and c.host == "api.local"),
    ("{type: exec, command: 'curl -f $HEALTH_ADDRESS', timeout: 3s}",
     lambda c: isinstance(c, ExecCheck) and c.timeout == 3),
    ("{type: tcp, start_period: 0, deadline: 5m}", lambda c: isinstance(c, TcpCheck) and c.deadline == 300),
])
def test_health_variants(health: str, check: object) -> None:
    config = load(OVERRIDES + f"    health: {health}\n")
    assert check(config.services["api"].health)  # type: ignore[operator]


@pytest.mark.parametrize(("health", "key", "words"), [
    ("{path: health}", "services.api.health.path", "start with '/'"),
    ("{expected_status: 42}", "services.api.health.expected_status", "not an HTTP status"),
    ("{type: exec}", "services.api.health.command", "is required"),
    ("{type: tcp, path: /x}", "services.api.health.path", "unknown key"),
    ("{interval: 0s}", "services.api.health.interval", "greater than 0"),
    ("{healthy_threshold: 0}", "services.api.health.healthy_threshold", "greater than or equal to 1"),
])
def test_health_errors(health: str, key: str, words: str) -> None:
    (err,) = problems(OVERRIDES + f"    health: {health}\n")
    assert err.key == key and words in err.message and err.line == 17


SIMPLE = "project: p\nrepos: {api: {path: .}}\nenvironments: {dev: {branch: dev}}\nservices:\n  api:\n    repo: api\n"


@pytest.mark.parametrize(("snippet", "key", "words"), [
    ("publish_dir: dist", "services.api.publish_dir", "only applies to kind: static"),
    ("kind: static", "services.api.publish_dir", "required for kind: static"),
    ("kind: lambda", "services.api.kind", "'process' or 'static'"),
    ("requires_env: [OK, 9NO]", "services.api.requires_env[1]", "invalid environment variable name"),
    ("deploy: {strategy: {type: canary, steps: []}}", "services.api.deploy.strategy.steps", "at least 1"),
    ("deploy: {strategy: {type: canary, steps: [{weight: 0}]}}", "services.api.deploy.strategy.steps[0].weight",
     "greater than or equal to 1"),
    ("deploy: {keep_releases: 0}", "services.api.deploy.keep_releases", "greater than or equal to 1"),
    ("deploy: {alarms: [ghost]}", "services.api.deploy.alarms[0]", "unknown alarm"),
    ("deploy: {strategy: {type: all_at_once, drain_timeout: 1s}}", "services.api.deploy.strategy.drain_timeout",
     "unknown key"),
])
def test_service_rules(snippet: str, key: str, words: str) -> None:
    run = "" if "kind: static" in snippet else "    run: x\n"
    found = problems(SIMPLE + run + f"    {snippet}\n")
    assert [p.key for p in found] == [key], [str(p) for p in found]
    assert words in found[0].message


def test_blue_green_and_all_at_once_drain() -> None:
    config = load(SIMPLE + "    run: x\n    deploy: {strategy: {type: blue_green, verify_timeout: 1m}, "
                  "ws_drain_timeout: 2m}\n")
    deploy = config.services["api"].deploy
    assert deploy.drain_timeout == 30 and deploy.effective_ws_drain_timeout == 120
    config = load(SIMPLE + "    run: x\n    deploy: {strategy: {type: all_at_once}}\n")
    assert config.services["api"].deploy.drain_timeout == 0


@pytest.mark.parametrize(("alarm", "key", "words"), [
    ("{metric: m, comparison: '>', threshold: 1, evaluation_periods: 2, datapoints_to_alarm: 3}",
     "alarms.x.datapoints_to_alarm", "exceeds evaluation_periods"),
    ("{metric: m, comparison: '=>', threshold: 1}", "alarms.x.comparison", "'>', '>=', '<' or '<='"),
    ("{metric: m, comparison: '<', threshold: 1, statistic: Median}", "alarms.x.statistic", "unknown statistic"),
    ("{metric: m, comparison: '<', threshold: high}", "alarms.x.threshold", "valid number"),
    ("{metric: m, comparison: '<', threshold: 1, treat_missing_data: zero}", "alarms.x.treat_missing_data",
     "'notBreaching'"),
    ("{metric: m, threshold: 1}", "alarms.x.comparison", "is required"),
])
def test_alarm_rules(alarm: str, key: str, words: str) -> None:
    (err,) = problems(OVERRIDES + f"alarms:\n  x: {alarm}\n")
    assert err.key == key and words in err.message and err.line == 18


def test_notification_routes_reference_known_names() -> None:
    text = OVERRIDES + textwrap.dedent("""\
        notifications:
          channels:
            hook: {type: webhook, url: "https://example.com/x", headers: {X-Token: abc}}
          routes:
            - {to: [hook]}
            - {events: ["deploy.*"], to: [hook, pager], environments: [prod, qa], services: [web]}
    """)
    found = [(p.key, p.line) for p in problems(text)]
    assert found == [("notifications.routes[1].to[1]", 22), ("notifications.routes[1].environments[1]", 22),
                     ("notifications.routes[1].services[0]", 22)]
    config = load(text.replace(", pager", "").replace(", qa", "").replace("[web]", "[api]"))
    assert config.notifications.routes[0].events == ["*"]


@pytest.mark.parametrize(("snippet", "key", "words"), [
    ("  dev: {branch: dev, tag: 'v-{version}'}", "environments.dev.tag", "unknown placeholder {version}"),
    ("  dev: {branch: ''}", "environments.dev.branch", "at least 1 character"),
    ("  dev: {branch: dev, approvals: {required: 0}}", "environments.dev.approvals.required", ">= 1"),
    ("  Dev Env: {branch: dev}", "environments.Dev Env", "invalid name"),
])
def test_environment_rules(snippet: str, key: str, words: str) -> None:
    text = OVERRIDES.replace("  dev: {branch: dev}", snippet)
    if "Dev Env" in snippet:
        text = text.replace("promote_from: dev", "promote_from: 'Dev Env'").replace("{dev: \"127.0.0.1:8100\", ", "{")
    found = problems(text)
    assert found and found[0].key == key and (words in found[0].message
                                              or words.replace(">= 1", "greater than or equal to 1")
                                              in found[0].message)


def test_repo_needs_url_or_path() -> None:
    (err,) = problems(OVERRIDES.replace("repos: {api: {path: .}}", "repos: {api: {groups: [x]}}"))
    assert err.key == "repos.api" and "url" in err.message
    config = load(OVERRIDES.replace("repos: {api: {path: .}}", "repos: {api: {url: 'git@h:o/api.git'}}"))
    assert config.repo_path("api").parts[-3:] == (".shipyard", "repos", "api")


def test_programmatic_construction_checks_references() -> None:
    data = {"project": "p", "environments": {"dev": {"branch": "dev"}}, "repos": {},
            "services": {"a": {"repo": "nope", "run": "x"}}}
    with pytest.raises(ValidationError, match=r"services\.a\.repo: 'nope': unknown repo"):
        Config.model_validate(data)
    data["repos"] = {"nope": {"path": "."}}
    config = Config.model_validate(data)
    assert config.source is None and config.service_for("a", "dev").instances == 1
    Config(project="p", environments={"dev": {"branch": "dev"}})  # type: ignore[dict-item]


def test_names_are_bounded_where_they_become_paths_and_ids() -> None:
    long = "a" * 300
    found = problems(SIMPLE.replace("  api:\n    repo: api\n", f"  {long}:\n    repo: api\n") + "    run: x\n")
    assert [p.key for p in found] == [f"services.{long}"], [str(p) for p in found]
    assert "at most 63 characters" in found[0].message and "(300 characters)" in found[0].message
    assert not problems(SIMPLE.replace("  api:\n", f"  {'a' * 63}:\n") + "    run: x\n")
    (env_var,) = problems(SIMPLE + "    run: x\n" + f"    env: {{{'V' * 256}: x}}\n")
    assert "at most 255 characters" in env_var.message
    (branch,) = problems(SIMPLE.replace("{branch: dev}", "{branch: " + "b" * 201 + "}") + "    run: x\n")
    assert branch.key == "environments.dev.branch" and "at most 200 characters" in branch.message


@pytest.mark.parametrize(("state", "words"), [
    ("not a url", "invalid database URL"),
    ("notadb://host/x", "unknown database 'notadb'"),
    ("'sqlite://'", "in-memory SQLite database"),
])
def test_a_bad_state_url_is_a_config_error(state: str, words: str) -> None:
    (err,) = problems(SIMPLE.replace("project: p\n", f"project: p\nstate: {state}\n") + "    run: x\n")
    assert err.key == "state" and err.line == 2 and words in err.message, str(err)
    assert err.exit_code == 2
