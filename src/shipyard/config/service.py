"""A service: what to build and run from one repo, how to check it, which hooks wrap its deploys.

`ResolvedService` is the merged view for one environment (overrides applied, defaults filled in) so the
engine never has to know which of several places a value came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from shipyard.config.base import Address, EnvValue, EnvVarName, FieldProblem, Name, StrictModel
from shipyard.config.checks import HealthCheck, HttpCheck, TcpCheck, default_check_type
from shipyard.config.deploy import Deploy
from shipyard.config.durations import Duration
from shipyard.config.pipeline import BUILT_IN_STAGES, BuildImage, Scan, StageField
from shipyard.domain.launch import fill, split_run

HOOK_NAMES = ("application_stop", "before_install", "after_install", "application_start", "validate_service",
              "before_traffic", "after_traffic", "on_failure", "cleanup")
"""Lifecycle hooks in the order a deploy reaches them (CodeDeploy names, plus on_failure and cleanup)."""

STATIC_RUN = "python -m http.server {port} --bind 127.0.0.1 --directory {publish_dir}"
"""A static service's default `run` (`python` is the interpreter that runs shipyard: see engine.settings)."""


class Hook(StrictModel):
    """A shell command run at one lifecycle point; a non-zero exit or timeout fails the deploy."""

    command: str = Field(min_length=1, description="Shell command run in the release directory.")
    timeout: Duration = Field(default=300.0, gt=0, description="Kill the hook and fail the step after this long.")


def _hook_shorthand(value: Any) -> Any:
    return {"command": value} if isinstance(value, str) else value


HookField = Annotated[Hook | None, BeforeValidator(_hook_shorthand, json_schema_input_type=str | Hook | None)]
_HOOK_HELP = "Command string or {command, timeout}."


class Hooks(StrictModel):
    """Lifecycle hooks; each is a command string or {command, timeout} (timeout defaults to 5m)."""

    application_stop: HookField = Field(default=None, description=f"Before old instances stop. {_HOOK_HELP}")
    before_install: HookField = Field(default=None, description=f"Before the release is built. {_HOOK_HELP}")
    after_install: HookField = Field(default=None, description=f"After build, before instances start. {_HOOK_HELP}")
    application_start: HookField = Field(default=None, description=f"After new instances start. {_HOOK_HELP}")
    validate_service: HookField = Field(default=None, description=f"After health passes; fail to abort. {_HOOK_HELP}")
    before_traffic: HookField = Field(default=None, description=f"Before the router sends traffic. {_HOOK_HELP}")
    after_traffic: HookField = Field(default=None, description=f"After all traffic is on the new set. {_HOOK_HELP}")
    on_failure: HookField = Field(default=None, description=f"When a deploy fails or rolls back. {_HOOK_HELP}")
    cleanup: HookField = Field(default=None, description=f"Always, at the very end of a deploy. {_HOOK_HELP}")

    def defined(self) -> dict[str, Hook]:
        """The hooks that are set, in lifecycle order."""
        return {name: hook for name in HOOK_NAMES if (hook := getattr(self, name)) is not None}


class EnvOverride(StrictModel):
    """Per-environment differences of a service; deliberately few keys so envs stay alike."""

    instances: int | None = Field(default=None, ge=1, le=64, description="Instance count in this environment.")
    env: dict[EnvVarName, EnvValue] = Field(default_factory=dict,
                                            description="Variables added to (or replacing) the service's env.")
    listen: Address | None = Field(default=None, description='Router front address "host:port" in this environment.')


HealthField = Annotated[HealthCheck | None,
                        BeforeValidator(default_check_type, json_schema_input_type=HealthCheck | None)]


class Service(StrictModel):
    """One deployable service built from one repo."""

    repo: Name = Field(description="Key of `repos` holding the service's code.")
    kind: Literal["process", "static"] = Field(
        default="process", description="`process` runs a server; `static` serves `publish_dir` after the build.")
    build: str | None = Field(default=None, description="Shell command that builds a release (run in its directory).")
    build_host: Name | None = Field(default=None, description="A host under `hosts:` that runs `build` (over SSH, in "
                                    "a fresh directory under its release_dir) instead of the controller; the built "
                                    "release comes back and ships from here. Needs no `hosts setup`.")
    run: str | None = Field(default=None, description="Command that starts one instance; `{port}` (and `$PORT`), "
                                              "`{publish_dir}`, `{instance}` and `{env}` are replaced (PORT is "
                                              "also set). Required for kind process.")
    publish_dir: str | None = Field(default=None, description="Directory (relative to the repo) that a static "
                                                      "service serves.")
    migrate: str | None = Field(default=None, description="Command run once per deployment before traffic moves.")
    env: dict[EnvVarName, EnvValue] = Field(default_factory=dict,
                                            description="Environment variables for instances and hooks.")
    requires_env: list[EnvVarName] = Field(default_factory=list,
                                           description="Variables that must be set (env or secrets) to deploy.")
    health: HealthField = Field(default=None, description="Health check (`type`: http, tcp or exec; http if omitted). "
                                                  "Default: tcp for process, http GET / for static.")
    hooks: Hooks = Field(default_factory=Hooks, description="Lifecycle hooks.")
    pipeline: list[Name] | None = Field(
        default=None, description="Stages run in order before any instance starts; `build`, `migrate` and `scan` "
                                  "are built in, other names are defined under `stages`. Default: build, then "
                                  "migrate if set. docs/pipeline.md.")
    stages: dict[Name, StageField] = Field(default_factory=dict,
                                           description="Command stages: name -> command or {run, timeout}.")
    scan: Scan = Field(default_factory=Scan, description="The `scan` stage: scanner, fail_on, ignore.")
    image: BuildImage | None = Field(
        default=None, description="The image the `build` stage pushes to ECR as <repository>:<sha>, and the "
                                  "tags shipyard adds to it (semver, latest). docs/pipeline.md.")
    deploy: Deploy = Field(default_factory=Deploy, description="Target, router, strategy and deploy timers.")
    environments: dict[Name, EnvOverride] = Field(
        default_factory=dict, description="Per-environment overrides: instances, env, listen.")

    @field_validator("run")
    @classmethod
    def _splits(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                split_run(value)
            except ValueError as exc:
                raise ValueError(f"cannot split the command like a shell would: {exc}") from None
        return value

    @field_validator("publish_dir")
    @classmethod
    def _inside_the_release(cls, value: str | None) -> str | None:
        if value is not None:
            path = PurePosixPath(value)
            if not value.strip() or path.is_absolute() or ".." in path.parts:
                raise ValueError(f"{value!r}: a directory inside the repo (relative, no '..'), e.g. dist")
        return value

    @model_validator(mode="after")
    def _kind_fits(self) -> Service:
        releases = getattr(type(self.deploy.target), "ACTIVATES_RELEASES", False)
        if releases and "strategy" in self.deploy.model_fields_set and self.deploy.strategy.type != "all_at_once":
            raise FieldProblem(f"a {self.deploy.target.type} target has no instances to move traffic between: it "
                               "deploys all at once (strategy all_at_once, or leave strategy out)",
                               "deploy", "strategy")
        if self.kind == "process":
            if not self.run and not releases:
                raise FieldProblem("required for kind: process (the command that starts an instance; not "
                                   "for a static or command target)", "run")
            if self.publish_dir is not None:
                raise FieldProblem("publish_dir only applies to kind: static", "publish_dir")
        elif not self.publish_dir:
            raise FieldProblem("required for kind: static (the directory to serve)", "publish_dir")
        if self.image is not None and not self.build:
            raise FieldProblem("needs `build`: the build stage is what pushes <repository>:<sha>", "image")
        return self._pipeline_fits()

    def _pipeline_fits(self) -> Service:
        for name in self.stages:
            if name in BUILT_IN_STAGES:
                raise FieldProblem(f"{name!r} is a built-in stage; give the command stage another name", "stages",
                                   name)
        if self.pipeline is None:
            if self.stages:
                raise FieldProblem(f"defined but not run: add {', '.join(self.stages)} to `pipeline`", "stages")
            return self
        names = self.pipeline
        for idx, name in enumerate(names):
            if names.index(name) != idx:
                raise FieldProblem(f"stage {name!r} is listed twice", "pipeline", idx)
            if name not in BUILT_IN_STAGES and name not in self.stages:
                raise FieldProblem(f"unknown stage {name!r}: built in are {', '.join(BUILT_IN_STAGES)}; define "
                                   "others under `stages`", "pipeline", idx)
            if name == "migrate" and not self.migrate:
                raise FieldProblem("stage `migrate` needs the service's `migrate` command", "pipeline", idx)
        if "build" not in names:
            raise FieldProblem("must include `build` (the release instances run is made there)", "pipeline")
        if self.migrate and "migrate" not in names:
            raise FieldProblem("`migrate` is set: say where it runs by listing `migrate`", "pipeline")
        unused = [name for name in self.stages if name not in names]
        if unused:
            raise FieldProblem(f"defined but not run: add {', '.join(unused)} to `pipeline`", "stages")
        return self

    @property
    def effective_pipeline(self) -> tuple[str, ...]:
        """The stages in order: the configured pipeline, or the build then migrate (if set)."""
        if self.pipeline is not None:
            return tuple(self.pipeline)
        return ("build", "migrate") if self.migrate else ("build",)

    @property
    def effective_run(self) -> str:
        """The run command, with the static file server as the default for static services."""
        return self.run or STATIC_RUN

    @property
    def effective_health(self) -> HealthCheck:
        """The configured check, else a sensible one: port open (process) or GET / (static)."""
        if self.health is not None:
            return self.health
        if self.kind == "static":
            return HttpCheck(path="/")
        return TcpCheck(type="tcp")

    def deploy_for(self, env: str) -> Deploy:
        """The deploy section as it applies in `env`: instances and listen overrides folded in, and
        `router.listen` reduced to that env's single address (or None)."""
        override = self.environments.get(env)
        router, target = self.deploy.router, self.deploy.target
        if "listen" in type(router).model_fields:     # a plugin's router may have no front address
            own = router.listen.get(env) if isinstance(router.listen, dict) else router.listen
            listen = override.listen if override and override.listen else own
            router = router.model_copy(update={"listen": listen})
        if override and override.instances is not None and "instances" in type(target).model_fields:
            target = target.model_copy(update={"instances": override.instances})
        return self.deploy.model_copy(update={"router": router, "target": target})

    def env_for(self, env: str) -> dict[str, str]:
        """Service env with the environment's override on top."""
        override = self.environments.get(env)
        return {**self.env, **(override.env if override else {})}


class ServiceDefaults(StrictModel):
    """Values every service starts from; a service's own keys win (mappings merge key by key,
    lists and strings replace, a different `type` replaces the whole block)."""

    env: dict[EnvVarName, EnvValue] | None = Field(default=None, description="Default environment variables.")
    requires_env: list[EnvVarName] | None = Field(default=None, description="Default required variables.")
    health: HealthField = Field(default=None, description="Default health check.")
    hooks: Hooks | None = Field(default=None, description="Default lifecycle hooks.")
    deploy: Deploy | None = Field(default=None,
                                  description="Default deploy section (target, router, strategy, timers).")


@dataclass(frozen=True)
class ResolvedService:
    """One service as it deploys in one environment: every override and default applied."""

    name: str
    environment: str
    branch: str
    repo: str
    repo_path: Path
    kind: str
    build: str | None
    run: str
    publish_dir: str | None
    migrate: str | None
    env: dict[str, str]
    requires_env: tuple[str, ...]
    health: HealthCheck
    hooks: Hooks
    deploy: Deploy
    service: Service
    build_host: str | None = None

    @property
    def instances(self) -> int:
        return self.deploy.target.instances

    @property
    def listen(self) -> str | None:
        listen = self.deploy.router.listen
        return listen if isinstance(listen, str) else None

    def run_command(self, port: int, instance: str = "") -> str:
        """The run command with `{port}` (and `$PORT`), `{publish_dir}`, `{instance}` and `{env}` filled in,
        as text (the engine fills them argument by argument: shipyard.domain.launch).

        Only those exact placeholders are replaced, so shell braces (`awk '{print $1}'`) survive.
        """
        values = {"port": str(port), "publish_dir": self.publish_dir or ".", "instance": instance,
                  "env": self.environment}
        return fill(self.run, values)
