"""The top-level shipyard.yaml model and the lookups the rest of shipyard uses on it.

Callers ask the Config (`service_for`, `listen_for`, `repo_path`) instead of walking sections, so that
overrides, defaults and relative paths are resolved in exactly one place.
"""

from __future__ import annotations

import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from shipyard.config.alerting import Alarm, MetricSource, Notifications, Secrets
from shipyard.config.approvals import ApprovalLinks, Approvals, Person
from shipyard.config.base import Name, StrictModel
from shipyard.config.checklists import Checklists
from shipyard.config.deploy import Deploy
from shipyard.config.durations import Duration
from shipyard.config.groups import ReleaseGroup
from shipyard.config.hosts import Host, Ssh
from shipyard.config.merge import apply_defaults
from shipyard.config.refs import reference_problems
from shipyard.config.service import ResolvedService, Service, ServiceDefaults
from shipyard.errors import (
    UnknownEnvironmentError,
    UnknownHostError,
    UnknownReleaseGroupError,
    UnknownServiceError,
)

TAG_FIELDS = ("ts", "env", "sha")
_TAG_FIELD = re.compile(r"\{([^{}]*)\}")
LOADER_CONTEXT = "shipyard.loader"       # validation context key: the loader checks references itself


class Repo(StrictModel):
    """A git repository holding one or more services."""

    url: str | None = Field(default=None, description="Remote URL to clone/push (omit for a local-only repo).")
    path: str | None = Field(default=None, description="Working copy, relative to shipyard.yaml "
                                               "(default .shipyard/repos/<name>).")
    groups: list[Name] = Field(default_factory=list,
                               description="Group names, to act on several repos at once (`--group`).")

    @model_validator(mode="after")
    def _somewhere(self) -> Repo:
        if self.url is None and self.path is None:
            raise ValueError("a repo needs a `url`, a `path` or both")
        return self


class Environment(StrictModel):
    """A stage (dev, stg, prod): one branch in every repo, promoted from the previous stage."""

    branch: str = Field(min_length=1, max_length=200, description="Branch deployed to this environment in every repo.")
    promote_from: Name | None = Field(default=None, description="Environment whose branch is merged into this one.")
    tag: str | None = Field(default=None, max_length=200,
                            description='Git tag created on promotion, e.g. "deploy-{ts}" '
                                        "({ts}, {env} and {sha} are replaced).")
    auto_deploy: bool = Field(default=False, description="Deploy automatically when the branch moves.")
    confirm: Literal["none", "once", "twice"] = Field(
        default="once", description="How many interactive confirmations a promotion/deploy asks for.")
    frozen: bool = Field(default=False, description="Refuse deploys and promotions (set after a bad release).")
    allow_force: bool = Field(default=False, description="Allow `shipyard rollback --force` to move this "
                              "env's branch with a force-with-lease push (otherwise rollbacks add a revert commit).")
    approvals: Approvals | None = Field(default=None, description="Approval gate before deploying.")
    checklists: Checklists | None = Field(default=None, description="Items checked before the first step "
                                          "(`pre`) and after the last (`post`): docs/approvals.md.")

    @field_validator("tag")
    @classmethod
    def _tag_fields(cls, value: str | None) -> str | None:
        for field in _TAG_FIELD.findall(value or ""):
            if field not in TAG_FIELDS:
                known = ", ".join("{" + name + "}" for name in TAG_FIELDS)
                raise ValueError(f"unknown placeholder {{{field}}} in tag; use {known}")
        return value


class HostAgent(StrictModel):
    """How this project's host processes run (the keeper, its routers and the agent)."""

    router_workers: Literal["auto"] | Annotated[int, Field(ge=1, le=64)] = Field(
        default="auto", description="Processes serving the built-in routers' traffic: `auto` (one per CPU, "
                                    "as HAProxy's threads) or 1-64. Read when the keeper starts and by "
                                    "`shipyard agent restart`, which applies a change without a failed request.")

    @field_validator("router_workers", mode="before")
    @classmethod
    def _workers(cls, value: Any) -> Any:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 64):
            return value
        raise ValueError(f"must be 'auto' or a number from 1 to 64, not {value!r}")

    def workers_arg(self) -> str:
        return str(self.router_workers)


class Webhooks(StrictModel):
    """Secrets of the push webhooks at /api/v1/hooks/git (a provider without one is refused)."""

    github_secret: str | None = Field(default=None, description="GitHub's webhook secret (checks "
                                      "X-Hub-Signature-256), e.g. ${secret:GITHUB_WEBHOOK_SECRET}.")
    gitlab_token: str | None = Field(default=None, description="GitLab's webhook secret token (checks "
                                     "X-Gitlab-Token), e.g. ${secret:GITLAB_WEBHOOK_TOKEN}.")


class Serve(StrictModel):
    """`shipyard serve`: the API and the background work it runs (split between daemons through leases)."""

    listen: str = Field(default="127.0.0.1:8700", description="HOST:PORT the API listens on (--listen wins).")
    lease_ttl: Duration = Field(default=15.0, ge=1, le=600,
                                description="How long a daemon's hold on a piece of work lasts without renewal: "
                                            "another daemon takes it over this long after its holder died.")
    outbox: bool = Field(default=True, description="Deliver queued notifications (the notify worker).")
    alarms: bool = Field(default=True, description="Watch every service's `deploy.alarms` where it serves, as "
                                                   "`shipyard watch` does: roll back within "
                                                   "`auto_rollback_window`, notify after.")
    aggregates: bool = Field(default=True, description="Fold every closed day into daily aggregates, so "
                                                       "stats and DORA over long periods read a few rows.")
    gitops_interval: Duration = Field(default=60.0, ge=1, le=86400,
                                      description="How often the GitOps watcher asks each auto_deploy branch "
                                                  "for its tip (git ls-remote).")
    webhooks: Webhooks = Field(default_factory=Webhooks, description="Push webhook secrets (GitHub, GitLab).")


class Config(StrictModel):
    """shipyard.yaml: the project, its repos, environments and services, and how to watch and tell."""

    project: Name = Field(description="Project name; used in tags, notifications and secret prefixes.")
    timezone: str = Field(default="UTC", description="IANA time zone for tag timestamps, e.g. Asia/Seoul.")
    state: str | None = Field(default=None, description="SQLAlchemy URL of the state database "
                                                "(default sqlite:///<dir>/.shipyard/state.db); a relative "
                                                "SQLite path is relative to shipyard.yaml's directory.")
    repos: dict[Name, Repo] = Field(default_factory=dict, description="Git repositories by name.")
    environments: dict[Name, Environment] = Field(min_length=1, description="Environments by name.")
    services: dict[Name, Service] = Field(default_factory=dict, description="Services by name.")
    defaults: ServiceDefaults | None = Field(default=None, description="Values every service inherits.")
    alarms: dict[Name, Alarm] = Field(default_factory=dict, description="Alarms by name.")
    metrics: dict[Name, MetricSource] = Field(default_factory=dict, description="Metric sources by name "
                                              "(Prometheus, CloudWatch), chosen per service by `deploy.metrics`.")
    notifications: Notifications = Field(default_factory=Notifications,
                                         description="Notification channels and routes.")
    secrets: Secrets = Field(default_factory=Secrets, description="Secrets provider.")
    agent: HostAgent = Field(default_factory=HostAgent, description="The host's keeper, routers and agent.")
    hosts: dict[Name, Host] = Field(default_factory=dict, description="Machines reached over SSH, by name.")
    releases: dict[Name, ReleaseGroup] = Field(default_factory=dict,
                                               description="Release groups by name: services released together "
                                                           "in waves with one abort (`shipyard release NAME`).")
    ssh: Ssh = Field(default_factory=Ssh, description="How shipyard connects to `hosts`.")
    serve: Serve = Field(default_factory=Serve, description="The API daemon (`shipyard serve`).")
    approvers: dict[Person, list[Person]] = Field(default_factory=dict,
                                                description="Approver groups by name, each a list of people "
                                                            "(named by environments' `approvals.approvers`).")
    approval_links: ApprovalLinks | None = Field(default=None, description="Signed approve/reject links in "
                                                                           "approval messages (none: no links).")
    retention: Duration | None = Field(default=None, ge=86400,
                                       description="Prune runs, steps, events and delivered notifications older "
                                                   "than this (whole days, at least 1d), keeping daily aggregates "
                                                   "for stats and DORA; none: keep the history forever.")

    _source: Path | None = PrivateAttr(None)

    @model_validator(mode="before")
    @classmethod
    def _apply_defaults(cls, data: Any) -> Any:
        return apply_defaults(data)

    @field_validator("state")
    @classmethod
    def _usable_state(cls, value: str | None) -> str | None:
        if value is not None:
            from shipyard.dburl import url_problem  # SQLAlchemy loads only when a state URL is given

            problem = url_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name like Asia/Seoul)") from None
        return value

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> Config:
        if info.context and info.context.get(LOADER_CONTEXT):
            return self
        problems = reference_problems(self.model_dump(by_alias=True))
        if problems:
            path, message = problems[0]
            raise ValueError(f"{'.'.join(map(str, path))}: {message}")
        return self

    # --- where it came from ---------------------------------------------------------------------------
    @property
    def source(self) -> Path | None:
        """The shipyard.yaml this was loaded from (None when built in code)."""
        return self._source

    @property
    def root(self) -> Path:
        """Directory that relative paths in the config are resolved against."""
        return self._source.parent if self._source else Path.cwd()

    @property
    def state_url(self) -> str:
        """The state database URL, defaulting to SQLite under .shipyard/ beside shipyard.yaml; a relative
        SQLite path is anchored there too (not at the directory a command happens to run in)."""
        from shipyard.dburl import anchored

        return anchored(self.state or "sqlite:///.shipyard/state.db", self.root)

    # --- lookups ----------------------------------------------------------------------------------------
    def service(self, name: str) -> Service:
        """The service named `name`, or UnknownServiceError listing the known ones."""
        try:
            return self.services[name]
        except KeyError:
            known = ", ".join(sorted(self.services)) or "none"
            raise UnknownServiceError(f"unknown service {name!r} (known: {known})") from None

    def environment(self, name: str) -> Environment:
        """The environment named `name`, or UnknownEnvironmentError listing the known ones."""
        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(self.environments)
            raise UnknownEnvironmentError(f"unknown environment {name!r} (known: {known})") from None

    def host(self, name: str) -> Host:
        """The host named `name`, or UnknownHostError listing the known ones."""
        try:
            return self.hosts[name]
        except KeyError:
            known = ", ".join(self.hosts) or "none; add them under `hosts:`"
            raise UnknownHostError(f"unknown host {name!r} (known: {known})") from None

    def release_group(self, name: str) -> ReleaseGroup:
        """The release group named `name`, or UnknownReleaseGroupError listing the known ones."""
        try:
            return self.releases[name]
        except KeyError:
            known = ", ".join(sorted(self.releases)) or "none; define them under `releases:`"
            raise UnknownReleaseGroupError(f"unknown release group {name!r} (known: {known})") from None

    def repo_path(self, repo: str) -> Path:
        """Absolute working-copy path of a repo (default .shipyard/repos/<name>)."""
        path = self.repos[repo].path
        return (self.root / (path or f".shipyard/repos/{repo}")).resolve()

    def repos_in_group(self, group: str) -> list[str]:
        """Names of the repos tagged with `group`, in config order."""
        return [name for name, repo in self.repos.items() if group in repo.groups]

    def promotion_order(self) -> list[str]:
        """Environment names with every source before the environments promoted from it."""
        order: list[str] = []

        def visit(name: str) -> None:
            if name in order:
                return
            source = self.environments[name].promote_from
            if source and source in self.environments and source not in order:
                visit(source)
            order.append(name)

        for name in self.environments:
            visit(name)
        return order

    def deploy_for(self, service: str, env: str) -> Deploy:
        """The service's deploy section with `env`'s overrides applied."""
        self.environment(env)
        return self.service(service).deploy_for(env)

    def listen_for(self, service: str, env: str) -> str | None:
        """Front address of (service, env): the env override, the `{env: addr}` entry, or the single
        `router.listen` string; None when not fixed (the router then picks a free port)."""
        listen = getattr(self.deploy_for(service, env).router, "listen", None)
        return listen if isinstance(listen, str) else None

    def service_for(self, name: str, env: str) -> ResolvedService:
        """Everything about deploying `name` to `env`, merged (see ResolvedService)."""
        svc, environment = self.service(name), self.environment(env)
        return ResolvedService(
            name=name, environment=env, branch=environment.branch, repo=svc.repo,
            repo_path=self.repo_path(svc.repo), kind=svc.kind, build=svc.build, run=svc.effective_run,
            publish_dir=svc.publish_dir, migrate=svc.migrate, env=svc.env_for(env),
            requires_env=tuple(svc.requires_env), health=svc.effective_health, hooks=svc.hooks,
            deploy=svc.deploy_for(env), service=svc, build_host=svc.build_host,
        )
