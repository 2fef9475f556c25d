"""Checks that span sections: names that must exist elsewhere, promotion cycles, clashing front ports.

Front ports clash when two services of one environment listen on the same address. The same address in
two environments of one service is allowed: a single `listen` string is meant for setups where each
environment runs on its own host (the single-host setup gives a mapping {env: address} instead).

They run on plain (merged) data rather than on models so the loader can report them together with field
errors in one pass: a wrong `repo:` is found even when another service has a typo.
"""

from __future__ import annotations

from typing import Any

from shipyard.config.approvals import approval_problems
from shipyard.config.checklists import checklist_problems

Path = tuple[str | int, ...]
Problem = tuple[Path, str]


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _known(kind: str, names: dict[str, Any], section: str) -> str:
    listed = ", ".join(sorted(names)) or "none defined"
    return f"unknown {kind}; define it under `{section}` (known: {listed})"


def _environments(envs: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    for name, env in envs.items():
        source = _mapping(env).get("promote_from")
        if not isinstance(source, str):
            continue
        path: Path = ("environments", name, "promote_from")
        if source == name:
            problems.append((path, f"environment {name!r} cannot promote from itself"))
        elif source not in envs:
            problems.append((path, f"{source!r}: " + _known("environment", envs, "environments")))
    for start in envs:                                   # a chain that comes back to where it began
        seen, current = [start], _mapping(envs[start]).get("promote_from")
        while isinstance(current, str) and current in envs and current not in seen:
            seen.append(current)
            current = _mapping(envs[current]).get("promote_from")
        if current == start and len(seen) > 1 and start == min(seen):
            chain = " <- ".join([*seen, start])
            problems.append((("environments", start, "promote_from"), f"promotion cycle: {chain}"))
    return problems


def _listen(service: dict[str, Any], env: str) -> str | None:
    override = _mapping(_mapping(service.get("environments")).get(env)).get("listen")
    if isinstance(override, str):
        return override.strip()
    listen = _mapping(_mapping(service.get("deploy")).get("router")).get("listen")
    if isinstance(listen, dict):
        listen = listen.get(env)
    return listen.strip() if isinstance(listen, str) else None


def _listen_path(service: dict[str, Any], name: str, env: str) -> Path:
    if isinstance(_mapping(_mapping(service.get("environments")).get(env)).get("listen"), str):
        return ("services", name, "environments", env, "listen")
    listen = _mapping(_mapping(service.get("deploy")).get("router")).get("listen")
    base: Path = ("services", name, "deploy", "router", "listen")
    return (*base, env) if isinstance(listen, dict) else base


def _services(data: dict[str, Any], envs: dict[str, Any]) -> list[Problem]:
    repos, alarms, sources = _mapping(data.get("repos")), _mapping(data.get("alarms")), _mapping(data.get("metrics"))
    problems: list[Problem] = []
    used: dict[tuple[str, str], str] = {}          # (env, address) -> service
    for name, service in _mapping(data.get("services")).items():
        if not isinstance(service, dict):
            continue
        base: Path = ("services", name)
        repo = service.get("repo")
        if isinstance(repo, str) and repo not in repos:
            problems.append(((*base, "repo"), f"{repo!r}: " + _known("repo", repos, "repos")))
        for env in _mapping(service.get("environments")):
            if env not in envs:
                problems.append(((*base, "environments", env),
                                 f"{env!r}: " + _known("environment", envs, "environments")))
        deploy = _mapping(service.get("deploy"))
        listen = _mapping(deploy.get("router")).get("listen")
        for env in _mapping(listen):
            if env not in envs:
                problems.append(((*base, "deploy", "router", "listen", env),
                                 f"{env!r}: " + _known("environment", envs, "environments")))
        alarm_names = deploy.get("alarms")
        for index, alarm in enumerate(alarm_names if isinstance(alarm_names, list) else []):
            if isinstance(alarm, str) and alarm not in alarms:
                problems.append(((*base, "deploy", "alarms", index),
                                 f"{alarm!r}: " + _known("alarm", alarms, "alarms")))
        source = deploy.get("metrics")
        if isinstance(source, str) and source not in sources:
            problems.append(((*base, "deploy", "metrics"), f"{source!r}: " + _known("metric source", sources,
                                                                                   "metrics")))
        problems += _build_host(data, base, service)
        target = _mapping(deploy.get("target")).get("type", "local")
        problems += _target_hosts(data, base, _mapping(deploy.get("target")), _mapping(deploy.get("strategy")))
        for env, override in _mapping(service.get("environments")).items():
            if target == "ssh" and _mapping(override).get("instances") is not None:
                problems.append(((*base, "environments", env, "instances"),
                                 "an ssh target runs `per_host` instances on each of its hosts; set "
                                 "deploy.target.per_host instead"))
        for env in envs:
            address = _listen(service, env)
            if address is None or target != "local":
                continue
            if (env, address) in used:
                path = _listen_path(service, name, env)
                if not any(known == path for known, _ in problems):
                    problems.append((path, f"{address} is also the front address of {used[env, address]} in "
                                           f"{env}; each service needs its own port"))
            else:
                used[env, address] = name
    return problems


def _build_host(data: dict[str, Any], base: Path, service: dict[str, Any]) -> list[Problem]:
    """A build host is one of `hosts:` and has something to build."""
    host = service.get("build_host")
    if not isinstance(host, str):
        return []
    hosts = _mapping(data.get("hosts"))
    if host not in hosts:
        return [((*base, "build_host"), f"{host!r}: " + _known("host", hosts, "hosts"))]
    build = service.get("build")
    if not isinstance(build, str) or not build.strip():
        return [((*base, "build_host"), "build_host needs a `build` command to run there")]
    return []


def _target_hosts(data: dict[str, Any], base: Path, target: dict[str, Any],
                  strategy: dict[str, Any]) -> list[Problem]:
    """An ssh target's hosts exist under `hosts:`; host batches need an ssh target."""
    hosts = _mapping(data.get("hosts"))
    problems: list[Problem] = []
    kind = target.get("type", "local")
    if kind == "ssh":
        names = target.get("hosts")
        for index, host in enumerate(names if isinstance(names, list) else []):
            if isinstance(host, str) and host not in hosts:
                problems.append(((*base, "deploy", "target", "hosts", index),
                                 f"{host!r}: " + _known("host", hosts, "hosts")))
    router = _mapping(_mapping(_mapping(data.get("services")).get(str(base[1]))).get("deploy")).get("router")
    where = _mapping(router).get("host")
    if isinstance(where, str) and where not in hosts:
        problems.append(((*base, "deploy", "router", "host"), f"{where!r}: " + _known("host", hosts, "hosts")))
    if strategy.get("per") == "host" and kind != "ssh":
        problems.append(((*base, "deploy", "strategy", "per"),
                         "per: host needs an ssh target (`target: {type: ssh, hosts: [...]}`)"))
    return problems


def _routes(data: dict[str, Any], envs: dict[str, Any]) -> list[Problem]:
    notifications = _mapping(data.get("notifications"))
    channels, services = _mapping(notifications.get("channels")), _mapping(data.get("services"))
    routes = notifications.get("routes")
    problems: list[Problem] = []
    for index, route in enumerate(routes if isinstance(routes, list) else []):
        route = _mapping(route)
        for key, known, kind, section in (("to", channels, "channel", "notifications.channels"),
                                          ("environments", envs, "environment", "environments"),
                                          ("services", services, "service", "services")):
            names = route.get(key)
            for pos, item in enumerate(names if isinstance(names, list) else []):
                if isinstance(item, str) and item not in known:
                    problems.append((("notifications", "routes", index, key, pos),
                                     f"{item!r}: " + _known(kind, known, section)))
    return problems


def _release_groups(data: dict[str, Any]) -> list[Problem]:
    """Every member of a release group must be a defined service."""
    services = _mapping(data.get("services"))
    problems: list[Problem] = []
    for name, group in _mapping(data.get("releases")).items():
        members = _mapping(group).get("services")
        for index, member in enumerate(members if isinstance(members, list) else []):
            if isinstance(member, str) and member not in services:
                problems.append((("releases", name, "services", index),
                                 f"{member!r}: " + _known("service", services, "services")))
    return problems


def reference_problems(data: Any) -> list[Problem]:
    """Every cross-section problem in (defaults-merged) config data, as (path, message) pairs."""
    if not isinstance(data, dict):
        return []
    envs = _mapping(data.get("environments"))
    return (_environments(envs) + _services(data, envs) + _routes(data, envs) + approval_problems(data)
            + _release_groups(data) + checklist_problems(data))
