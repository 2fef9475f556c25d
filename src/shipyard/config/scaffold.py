"""`shipyard init`: a commented shipyard.yaml for the repository it is run in.

The text is a template rather than a dumped model so that it can teach (comments, commented-out hooks
and channels); a unit test loads it back so it never drifts from what the models accept.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from shipyard.secrets.scrub import GIT, scrubbed

_TEMPLATE = """\
# shipyard.yaml: how {project} is built, deployed and watched. Reference: docs/config.md
# Durations: "500ms", "2s", "5m", "1h", "1m30s" or seconds. ${{VAR}} / ${{VAR:-default}} read the
# environment; ${{secret:NAME}} is resolved by the secrets provider; $${{ writes a literal "${{".
project: {project}
timezone: UTC                  # IANA zone used in tag timestamps, e.g. Asia/Seoul
# state: postgresql+psycopg://user:pass@host/shipyard   # default: SQLite in .shipyard/state.db

repos:
  {name}: {{path: ".", {url}groups: [app]}}

environments:
  dev:  {{branch: dev, auto_deploy: true, confirm: none}}
  stg:  {{branch: stg, promote_from: dev, tag: "stg-deploy-{{ts}}"}}
  prod: {{branch: main, promote_from: stg, tag: "deploy-{{ts}}", confirm: twice}}

services:
  {name}:
    repo: {name}
    # build: pip install -r requirements.txt
    # Replace with your server's start command; {{port}} is the port to bind (also in $PORT).
    run: python -m http.server {{port}} --bind 127.0.0.1
    # migrate: python manage.py migrate     # once per deployment, before traffic moves
    env: {{}}
    requires_env: []
    health:
      type: http
      path: /                   # your health endpoint, e.g. /health
      expected_status: 200
      interval: 2s
      timeout: 1s
      healthy_threshold: 2
      unhealthy_threshold: 2
      start_period: 10s
      deadline: 2m
    # hooks:                          # each a command, or {{command: ..., timeout: 5m}}
    #   before_install: ./scripts/check.sh
    #   validate_service: {{command: ./scripts/smoke.sh, timeout: 2m}}
    #   on_failure: ./scripts/page-oncall.sh
    deploy:
      target: {{type: local, instances: 2}}
      router:
        type: builtin
        listen: {{dev: "127.0.0.1:8100", stg: "127.0.0.1:8200", prod: "127.0.0.1:8300"}}
      strategy: {{type: rolling, batch_size: 1, max_surge: 1, max_unavailable: 0, drain_timeout: 30s}}
      bake: 1m
      keep_previous: 5m
      alarms: [high_error_rate, high_5xx, slow_responses, no_healthy_hosts]
    # environments:                   # per-environment overrides: instances, env, listen
    #   prod: {{instances: 3}}

alarms:
  high_error_rate:   # failed requests (5xx and connection errors) above 5%
    {{metric: error_rate, statistic: Average, period: 1m, evaluation_periods: 3, datapoints_to_alarm: 2,
     comparison: ">", threshold: 0.05, treat_missing_data: notBreaching}}
  high_5xx:          # 5xx responses above 10%
    {{metric: http_5xx_ratio, statistic: Average, period: 1m, evaluation_periods: 3, datapoints_to_alarm: 2,
     comparison: ">", threshold: 0.10, treat_missing_data: notBreaching}}
  slow_responses:    # p95 response time above 2 s
    {{metric: latency_p95, statistic: Average, period: 1m, evaluation_periods: 3, datapoints_to_alarm: 2,
     comparison: ">", threshold: 2.0, treat_missing_data: notBreaching}}
  no_healthy_hosts:  # no instance passing its health check
    {{metric: healthy_hosts, statistic: Minimum, period: 1m, evaluation_periods: 1,
     comparison: "<", threshold: 1, treat_missing_data: breaching}}

notifications:
  channels: {{}}
  #   alerts:      {{type: slack, webhook: "${{secret:SLACK_ALERTS_WEBHOOK}}"}}
  #   deployments: {{type: slack, webhook: "${{secret:SLACK_DEPLOYS_WEBHOOK}}"}}
  #   monitoring:  {{type: slack, webhook: "${{secret:SLACK_MONITORING_WEBHOOK}}"}}
  #   ops: {{type: email, to: [ops@example.com], smtp: {{host: smtp.example.com, port: 587}}}}
  routes: []
  #   - {{events: ["deploy.failed", "rollback.*", "alarm.alarm"], to: [alerts, ops]}}
  #   - {{events: ["deploy.queued", "deploy.started", "deploy.succeeded", "approval.requested",
  #               "promotion.completed"], to: [deployments]}}
  #   - {{events: ["alarm.*", "analysis.*", "health.*"], to: [monitoring]}}

secrets: {{provider: local}}     # local | env | aws-secretsmanager | aws-ssm
"""


def project_name(project_dir: Path) -> str:
    """A valid shipyard name from a directory name ("My App" -> "my-app")."""
    name = re.sub(r"[^a-z0-9_.-]+", "-", project_dir.resolve().name.lower()).strip("-._")
    return name or "app"


def _remote_url(project_dir: Path) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(project_dir), "config", "--get", "remote.origin.url"],
                                capture_output=True, text=True, timeout=10, check=False, env=scrubbed(allow=GIT))
    except (OSError, subprocess.SubprocessError):
        return None
    url = result.stdout.strip()
    return url if result.returncode == 0 and url else None


def render_init(project_dir: Path, remote_url: str | None = None) -> str:
    """The shipyard.yaml text for `project_dir` (remote URL read from git when not given)."""
    name = project_name(project_dir)
    url = remote_url if remote_url is not None else _remote_url(project_dir)
    url_entry = f"url: {json.dumps(url)}, " if url else ""
    return _TEMPLATE.format(project=name, name=name, url=url_entry)
