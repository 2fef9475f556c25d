"""Everything the engine needs about one (service, env), read out of the config models in one place.

The engine never reaches into the config tree itself, so config shape changes stay in this module.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipyard.config.approvals import policy_for
from shipyard.config.checklists import item_spec
from shipyard.config.service import STATIC_RUN
from shipyard.domain.approvals import Policy
from shipyard.domain.checklists import Item
from shipyard.domain.launch import fill_argv, split_run
from shipyard.errors import UnknownEnvironmentError, UnknownServiceError, UsageError
from shipyard.releases.git import GitSource
from shipyard.releases.remote import BuildHost
from shipyard.strategies import AllAtOnce, BlueGreen, Canary, CanaryStep, HostBatches, HostRolling, Rolling, Strategy

HOOK_NAMES = ("application_stop", "before_install", "after_install", "application_start", "validate_service",
              "before_traffic", "after_traffic", "on_failure", "cleanup")


@dataclass(frozen=True)
class HookSpec:
    command: str
    timeout: float


@dataclass(frozen=True)
class ServiceSettings:
    service: str
    env: str
    branch: str
    source: GitSource
    build: str | None
    build_timeout: float
    run: str
    migrate: HookSpec | None
    environ: dict[str, str]
    instances: int
    stop_timeout: float
    listen: str | None               # None: the router keeps the address it has, or picks a free port
    strategy: Strategy
    drain_timeout: float
    ws_drain_timeout: float
    bake: float
    keep_previous: float
    step_timeout: float
    keep_releases: int
    health: Any                      # the config's health check model, consumed by shipyard.health
    health_wait: float
    hooks: dict[str, HookSpec]
    alarms: dict[str, Any] = field(default_factory=dict)   # name -> config Alarm or CloudWatchAlarmRef
    metrics: Any = None              # the config's metric source (config.alerting.MetricSource); None = router
    analysis: Any = None             # the canary judge's config (config.deploy.Analysis), None = no judge
    router_options: dict[str, Any] = field(default_factory=dict)   # proxy.RouterOptions keys for the router
    frozen: bool = False             # environments.<env>.frozen: deploys refused without an override
    publish_dir: str | None = None   # a static service's directory, relative to its release
    router: Any = None               # the config's router model (config.deploy.Router); None = built-in
    target: Any = None               # the config's target model (config.deploy.Target); None = local
    build_host: BuildHost | None = None   # where `build` runs; None = here, on the controller
    approvals: Policy | None = None  # environments.<env>.approvals, groups expanded; None = no gate
    pipeline: tuple[str, ...] = ()   # stage names in order (config.Service.effective_pipeline)
    stages: dict[str, HookSpec] = field(default_factory=dict)   # command stages: name -> (run, timeout)
    scan: Any = None                 # the config's scan gate (config.pipeline.Scan), None = defaults
    image: Any = None                # the build's ECR image and its tags (config.pipeline.BuildImage), or None
    checklist: tuple[Item, ...] = ()  # environments.<env>.checklists, pre then post, named alarms written out
    checklist_timeout: float = 86400.0   # manual pre items not all confirmed by then: cancelled
    checklist_dir: Path | None = None    # where checklist commands run (the project's directory)

    @property
    def post_watch(self) -> float:
        """The longest post item (the post-check phase lasts about that long): the previous set is kept
        warm that much longer, so a rollback from it is still a traffic flip."""
        return max((i.seconds for i in self.checklist if i.phase == "post" and not i.manual), default=0.0)

    def launch_argv(self, release_dir: Path) -> list[str]:
        """`run` split like a shell would (no shell runs it), with `{env}` and `{publish_dir}` (absolute, in
        `release_dir`) filled in; `{port}`/`$PORT` are the target's to fill and `{instance}` the agent's
        (see shipyard.domain.launch)."""
        return fill_argv(split_run(self.run), {"env": self.env,
                                               "publish_dir": str(release_dir / (self.publish_dir or "."))})


def _names(mapping: dict[str, Any]) -> str:
    return ", ".join(sorted(mapping)) or "none"


def service_settings(cfg: Any, project_root: Path, service: str, env: str) -> ServiceSettings:
    if service not in cfg.services:
        raise UnknownServiceError(f"unknown service {service!r} (known: {_names(cfg.services)})")
    if env not in cfg.environments:
        raise UnknownEnvironmentError(f"unknown environment {env!r} (known: {_names(cfg.environments)})")
    svc = cfg.service_for(service, env) if hasattr(cfg, "service_for") else cfg.services[service]
    envcfg = cfg.environments[env]
    repo = cfg.repos.get(svc.repo) if svc.repo else None
    if svc.repo and repo is None:
        raise UsageError(f"service {service}: repo {svc.repo!r} is not defined under repos")
    path = (project_root / repo.path).resolve() if repo is not None and repo.path else None
    url = repo.url if repo is not None else None
    if url and "://" not in url and ":" not in url:
        url = str((project_root / url).resolve())       # a local path to a bare origin
    if repo is None:
        path = project_root
    source = GitSource(name=svc.repo or service, url=url, path=path,
                       mirrors_dir=project_root / ".shipyard" / "mirrors")
    dep = svc.deploy
    strategy = _strategy(dep.strategy, dep.target)
    drain = float(getattr(dep.strategy, "drain_timeout", 30.0) or 30.0)
    hooks: dict[str, HookSpec] = {}
    for name in HOOK_NAMES:
        hook = getattr(svc.hooks, name, None) if svc.hooks is not None else None
        if hook is not None:
            hooks[name] = HookSpec(hook.command, float(hook.timeout))
    migrate = None
    if svc.migrate:
        migrate = HookSpec(svc.migrate, float(getattr(svc, "migrate_timeout", 600.0)))
    listen = cfg.listen_for(service, env) if hasattr(cfg, "listen_for") else getattr(dep.router, "listen", None)
    run = svc.run or ""
    if getattr(getattr(svc, "service", None), "run", "") is None and getattr(svc, "kind", "") == "static":
        # The default file server runs on the interpreter that runs shipyard: `python` may not be on PATH.
        run = shlex.join([sys.executable, *split_run(STATIC_RUN)[1:]])
    if not run and not getattr(type(dep.target), "ACTIVATES_RELEASES", False) \
            and not getattr(type(dep.target), "RUNS_IMAGE", False):      # ECS runs the image's command
        raise UsageError(f"service {service}: no `run` command configured")
    metrics: Any = getattr(cfg, "metrics", {}).get(getattr(dep, "metrics", None) or "")
    if (getattr(dep, "analysis", None) is not None and getattr(metrics, "type", "") == "cloudwatch"
            and not getattr(metrics, "revision_dimension", None)):
        raise UsageError(f"service {service}: the canary judge compares revisions, and metric source "
                         f"{dep.metrics!r} cannot tell them apart: set its revision_dimension")
    return ServiceSettings(
        service=service, env=env, branch=envcfg.branch, source=source, build=svc.build,
        build_timeout=float(getattr(svc, "build_timeout", 1800.0)), run=run, migrate=migrate,
        environ={k: str(v) for k, v in (svc.env or {}).items()},
        # a plugin's target model need not have these (docs/plugins.md): one instance, 10 s to stop
        instances=int(getattr(dep.target, "instances", 1)),
        stop_timeout=float(getattr(dep.target, "stop_timeout", 10.0)), listen=listen,
        strategy=strategy, drain_timeout=drain,
        ws_drain_timeout=float(getattr(dep, "ws_drain_timeout", None) or drain), bake=float(dep.bake or 0),
        keep_previous=float(dep.keep_previous), step_timeout=float(dep.step_timeout),
        keep_releases=int(dep.keep_releases), health=svc.health,
        health_wait=float(getattr(svc.health, "deadline", 120.0)), hooks=hooks,
        alarms=_alarms(cfg, dep, metrics), metrics=metrics,
        analysis=getattr(dep, "analysis", None), frozen=bool(getattr(envcfg, "frozen", False)),
        publish_dir=getattr(svc, "publish_dir", None), router_options=_router_options(dep.router),
        router=dep.router, target=dep.target, build_host=_build_host(cfg, svc),
        approvals=policy_for(getattr(envcfg, "approvals", None), dict(getattr(cfg, "approvers", None) or {})),
        **checklist_fields(cfg, envcfg, project_root), **_pipeline(svc))


def checklist_fields(cfg: Any, envcfg: Any, project_root: Path) -> dict[str, Any]:
    """The env's checklist items as deployments snapshot them (engine.checklists); commands run in the
    project's directory (where shipyard.yaml is), so `./bin/check` means the project's script."""
    lists = getattr(envcfg, "checklists", None)
    if lists is None:
        return {}
    alarms = dict(getattr(cfg, "alarms", None) or {})
    items = [Item(phase, i.name, i.kind, item_spec(i, alarms),
                  "block" if phase == "pre" else None if i.kind == "manual" else (i.on_fail or "rollback"))
             for phase, group in (("pre", lists.pre), ("post", lists.post)) for i in group]
    return {"checklist": tuple(items), "checklist_timeout": float(lists.timeout), "checklist_dir": project_root}


def _pipeline(svc: Any) -> dict[str, Any]:
    """`pipeline`, `stages`, `scan` and `image` of the service (a ResolvedService carries the model as `.service`)."""
    model = getattr(svc, "service", svc)
    pipeline = getattr(model, "effective_pipeline", None)
    if pipeline is None:
        return {}
    return {"pipeline": tuple(pipeline), "scan": model.scan, "image": getattr(model, "image", None),
            "stages": {name: HookSpec(st.run, float(st.timeout)) for name, st in model.stages.items()}}


def _alarms(cfg: Any, dep: Any, source: Any) -> dict[str, Any]:
    """deploy.alarms by name: a named alarm's config, or a CloudWatch alarm (read, not evaluated) under
    "cloudwatch:<its name>", in the region and endpoint of the service's CloudWatch source unless it says."""
    out: dict[str, Any] = {}
    for entry in getattr(dep, "alarms", []):
        if isinstance(entry, str):
            if entry in getattr(cfg, "alarms", {}):
                out[entry] = cfg.alarms[entry]
            continue
        if getattr(source, "type", "") == "cloudwatch":
            entry = entry.model_copy(update={"region": entry.region or source.region,
                                             "endpoint_url": entry.endpoint_url or source.endpoint_url})
        out[f"cloudwatch:{entry.cloudwatch}"] = entry
    return out


def _build_host(cfg: Any, svc: Any) -> BuildHost | None:
    """`build_host` and the machine it names (its login and address: part of the release key)."""
    name = getattr(svc, "build_host", None)
    if not name:
        return None
    host = getattr(cfg, "hosts", {}).get(name)
    if host is None:
        raise UsageError(f"build_host {name!r} is not defined under hosts")
    return BuildHost(name=name, machine=f"{name}={host.user}@{host.address}:{host.port}")


def _router_options(router: Any) -> dict[str, Any]:
    """The built-in router's timeouts, retries and trusted proxies (proxy.RouterOptions keys)."""
    options = getattr(router, "options", None)
    return dict(options()) if callable(options) else {}


def _strategy(cfg: Any, target: Any = None) -> Strategy:
    kind = cfg.type
    if kind == "all_at_once":
        return AllAtOnce()
    if kind == "rolling" and getattr(cfg, "per", "instance") == "host":
        return _host_rolling(target, HostBatches(cfg.batch, cfg.minimum_healthy_hosts), float(cfg.drain_timeout))
    if kind == "rolling":
        return Rolling(batch_size=cfg.batch_size, max_surge=cfg.max_surge, max_unavailable=cfg.max_unavailable,
                       drain_timeout=float(cfg.drain_timeout))
    if kind == "blue_green":
        return BlueGreen(drain_timeout=float(cfg.drain_timeout))
    if kind == "canary":
        return Canary(steps=tuple(CanaryStep(int(s.weight), float(s.pause)) for s in cfg.steps),
                      drain_timeout=float(cfg.drain_timeout))
    raise UsageError(f"unknown strategy {kind!r}")


def _host_rolling(target: Any, batches: HostBatches, drain: float) -> HostRolling:
    return HostRolling(per_host=int(getattr(target, "per_host", 1)), batches=batches,
                       in_place=getattr(target, "mode", "surge") == "in_place", drain_timeout=drain)


def strategy_named(name: str, settings: ServiceSettings) -> Strategy:
    """A --strategy override from the command line, with default parameters but the configured drain (on
    an ssh target `rolling` goes one host at a time)."""
    on_hosts = getattr(settings.target, "type", "local") == "ssh"
    rolling: Strategy = (_host_rolling(settings.target, HostBatches(), settings.drain_timeout) if on_hosts
                         else Rolling(drain_timeout=settings.drain_timeout))
    table: dict[str, Strategy] = {
        "all_at_once": AllAtOnce(), "rolling": rolling,
        "blue_green": BlueGreen(drain_timeout=settings.drain_timeout),
        "canary": Canary(drain_timeout=settings.drain_timeout)}
    if name not in table:
        raise UsageError(f"unknown strategy {name!r} (known: {', '.join(table)})")
    return table[name]
