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
# Every value below is one `shipyard init` chose; each says what it does. Change any of them.
# Durations: "500ms", "2s", "5m", "1h", "1m30s" or seconds. ${{VAR}} / ${{VAR:-default}} read the
# environment; ${{secret:NAME}} is resolved by the secrets provider; $${{ writes a literal "${{".
project: {project}             # names the project in tags, notifications and the secrets key file
timezone: UTC                  # IANA zone used in tag timestamps, e.g. Asia/Seoul
# state: postgresql+psycopg://user:pass@host/shipyard   # default: SQLite in .shipyard/state.db

repos:                         # the git repos services are built from
  {name}: {{path: ".", {url}groups: [app]}}   # this directory; `--group app` selects it

environments:                  # one git branch each; the branches must exist on origin (see docs/fleet.md)
  dev:  {{branch: dev, auto_deploy: true, confirm: none}}   # deployed when shipyard moves the branch; never asks
  stg:  {{branch: stg, promote_from: dev, tag: "stg-deploy-{{ts}}"}}   # `shipyard promote dev stg`; asks once
  prod: {{branch: main, promote_from: stg, tag: "deploy-{{ts}}", confirm: twice}}   # asks twice (type "prod")

services:
  {name}:
    repo: {name}               # the repo above
    # build: pip install -r requirements.txt     # runs once per revision in its release directory
    # Replace with your server's start command; {{port}} is the port to bind (also in $PORT).
    run: python -m http.server {{port}} --bind 127.0.0.1
    # migrate: python manage.py migrate     # once per deployment, before traffic moves
    env: {{}}                    # variables for build, hooks and instances, e.g. {{LOG_LEVEL: info}}
    requires_env: []           # names a deploy refuses to start without, e.g. [DATABASE_URL]
    health:                    # when an instance counts as healthy
      type: http               # GET a path (or tcp: connect; exec: run a command)
      path: /                  # your health endpoint, e.g. /health
      expected_status: 200     # the answer that means healthy
      interval: 2s             # time between two probes
      timeout: 1s              # a probe slower than this failed
      healthy_threshold: 2     # passes in a row to become healthy
      unhealthy_threshold: 2   # failures in a row to become unhealthy
      start_period: 10s        # failures this soon after start do not count (the app is booting)
      deadline: 2m             # not healthy by then: the deploy rolls back
    # hooks:                          # each a command, or {{command: ..., timeout: 5m}}
    #   before_install: ./scripts/check.sh
    #   validate_service: {{command: ./scripts/smoke.sh, timeout: 2m}}
    #   on_failure: ./scripts/page-oncall.sh
    deploy:
      target: {{type: local, instances: 2}}     # two processes on this machine, run by the shipyard agent
      router:
        type: builtin          # shipyard's own HTTP router in front of the instances
        listen: {{dev: "127.0.0.1:8100", stg: "127.0.0.1:8200", prod: "127.0.0.1:8300"}}   # per environment
      # one instance at a time, one extra while it starts, never fewer serving; 30s for open requests to end
      strategy: {{type: rolling, batch_size: 1, max_surge: 1, max_unavailable: 0, drain_timeout: 30s}}
      # bake: 5m   # after all traffic moved, keep watching health and the alarms this long before the
      #            # deploy succeeds (so every deploy takes at least this long). Default: no bake.
      keep_previous: 5m        # the old instances stay warm this long: `shipyard rollback` is a traffic flip
      # alarms: evaluated during `bake` and canary pauses (roll back), and by `shipyard watch` afterwards
      alarms: [high_error_rate, high_5xx, slow_responses, no_healthy_hosts]
    # environments:                   # per-environment overrides: instances, env, listen
    #   prod: {{instances: 3}}

alarms:                        # CloudWatch-style: datapoints_to_alarm of evaluation_periods periods breaching
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
  channels: {{}}                 # none yet; examples:
  #   alerts:      {{type: slack, webhook: "${{secret:SLACK_ALERTS_WEBHOOK}}"}}
  #   deployments: {{type: slack, webhook: "${{secret:SLACK_DEPLOYS_WEBHOOK}}"}}
  #   monitoring:  {{type: slack, webhook: "${{secret:SLACK_MONITORING_WEBHOOK}}"}}
  #   ops: {{type: email, to: [ops@example.com], smtp: {{host: smtp.example.com, port: 587}}}}
  routes: []                   # which events go to which channels; examples:
  #   - {{events: ["deploy.failed", "rollback.*", "alarm.alarm"], to: [alerts, ops]}}
  #   - {{events: ["deploy.queued", "deploy.started", "deploy.succeeded", "approval.requested",
  #               "promotion.completed"], to: [deployments]}}
  #   - {{events: ["alarm.*", "analysis.*", "health.*"], to: [monitoring]}}

secrets: {{provider: local}}     # encrypted in .shipyard/; or env | aws-secretsmanager | aws-ssm
"""

GITIGNORE = ".gitignore"
STATE_DIR = ".shipyard/"
_GITIGNORE_BLOCK = "# shipyard's local state: database, agent, releases, encrypted secrets (never commit it)\n" \
                   f"{STATE_DIR}\n"
_IGNORES_STATE = re.compile(r"^\s*/?\.shipyard/?\s*$")


def ensure_gitignore(project_dir: Path) -> bool:
    """Make `project_dir`'s .gitignore ignore .shipyard/: appended once (a file that already ignores it is
    left alone), the file created when missing. Returns whether it was changed."""
    path = project_dir / GITIGNORE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    if any(_IGNORES_STATE.match(line) for line in text.splitlines()):
        return False
    sep = "" if not text or text.endswith("\n") else "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{sep}{chr(10) if text.strip() else ''}{_GITIGNORE_BLOCK}")
    return True


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
