"""GitOps, the effectful part: the `gitops` Work polling the watched branches, and the push webhooks.

Both end in `GitOps.moved(repo, branch, sha)`: for each (service, env) that branch deploys, the trigger is
inserted first (unique per service, env and sha: git_triggers) and the deploy started only if that insert
won, through the runner the API uses (actor `gitops:<source>`); the deployment gets a `deploy.triggered`
event naming the source, delivery, repo, branch, sha and pusher, and the trigger row its id, or the reason
it was refused (a frozen env: the engine records the refusal, the sha counts as handled, no retry).

The poller keeps the last tip handled per (repo, branch) in the store. The first tip it sees of a branch
is recorded as the baseline, not deployed: turning GitOps on (or adding a repo) deploys the next push,
never whatever the branch happened to hold, and a restarted or another daemon carries on from the record
instead of redeploying. A webhook is an explicit push: it deploys its sha (unless handled) and advances
the record too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from shipyard.daemon import gitops as g
from shipyard.errors import ShipyardError, UsageError
from shipyard.fleet.git import git_env, run_process
from shipyard.store import Store
from shipyard.store import events as eq
from shipyard.store import git_triggers as gq

log = logging.getLogger("shipyard.gitops")
LS_REMOTE_TIMEOUT = 30.0
T = TypeVar("T")


class HookRefused(ShipyardError):
    """A webhook answered with `status` (401 bad signature, 403 not configured, 409 replay, ...)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class Handled:
    service: str
    env: str
    sha: str
    deployment_id: str | None
    refused: str | None
    new: bool                     # False: this sha was handled before (by the poller, another hook, ...)


@dataclass(frozen=True)
class HookOutcome:
    handled: list[Handled] = field(default_factory=list)
    ignored: str | None = None


@dataclass(frozen=True)
class WebhookSecrets:
    """The resolved secrets (never logged or stored) or, per provider, why there is none."""

    github: str | None = None
    gitlab: str | None = None
    missing: Mapping[str, str] = field(default_factory=dict)      # provider -> one line for the 403


class GitOps:
    def __init__(self, config: Any, root: Path, store: Store, runner: Any, *, interval: float,
                 secrets: WebhookSecrets | None = None, say: Callable[[str], None] | None = None) -> None:
        self.config, self.root, self.store, self.runner = config, root, store, runner
        self.interval = interval
        self.secrets = secrets or WebhookSecrets()
        self.say = say or log.info
        self.watched = g.watches(config)
        self._failing: dict[tuple[str, str], str] = {}

    async def _db(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        def call() -> T:
            with self.store.session() as s:
                return fn(s, *args, **kw)
        return await asyncio.to_thread(call)

    # ---- polling ------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """The `gitops` Work: a round every `interval` until `stop` is set."""
        while not stop.is_set():
            await self.poll_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    async def poll_once(self) -> None:
        await asyncio.gather(*(self._poll(w) for w in self.watched))

    async def _poll(self, w: g.Watch) -> None:
        key = (w.repo, w.branch)
        try:
            current = await self.ls_remote(w)
            if current is None:
                raise UsageError(f"{w.repo}: the remote has no branch {w.branch}")
            last = await self._db(gq.tip, w.repo, w.branch)
            if last is None:
                await self._db(gq.advance, w.repo, w.branch, current, "poll")
                self.say(f"gitops: {w.repo}/{w.branch} at {current[:12]} (baseline; the next push deploys)")
            elif current != last:
                await self.moved(w.repo, w.branch, current, source="poll")
        except ShipyardError as exc:
            # One line per failure, said again only when it changes; the next round retries.
            if self._failing.get(key) != str(exc):
                self.say(f"gitops: {exc}")
            self._failing[key] = str(exc)
            return
        if self._failing.pop(key, None) is not None:
            self.say(f"gitops: {w.repo}/{w.branch} is reachable again")

    async def ls_remote(self, w: g.Watch) -> str | None:
        if w.location.startswith("-"):
            raise UsageError(f"{w.repo}: refusing a repo location that starts with '-'")
        res = await run_process(("git", "ls-remote", w.location, f"refs/heads/{w.branch}"), cwd=self.root,
                                timeout=LS_REMOTE_TIMEOUT, env=git_env())
        if not res.ok:
            raise UsageError(f"{w.repo}: git ls-remote failed: {res.last_error_line()}")
        return g.parse_ls_remote(res.stdout, w.branch)

    # ---- one moved branch ------------------------------------------------------------------------------
    async def moved(self, repo: str, branch: str, sha: str, *, source: str, delivery: str | None = None,
                    pusher: str | None = None) -> list[Handled]:
        out = [await self._trigger(p, source, delivery, pusher) for p in g.plan(self.watched, repo, branch, sha)]
        await self._db(gq.advance, repo, branch, sha, source)
        return out

    async def _trigger(self, p: g.Planned, source: str, delivery: str | None, pusher: str | None) -> Handled:
        won = await self._db(gq.claim, service=p.service, env=p.env, sha=p.sha, source=source, repo=p.repo,
                             branch=p.branch, delivery=delivery, pusher=pusher)
        if not won:
            row = await self._db(gq.get, p.service, p.env, p.sha)
            return Handled(p.service, p.env, p.sha, row.deployment_id if row else None,
                           row.refused if row else None, new=False)
        existing = await self._db(lambda s: getattr(gq.current_at(s, p.service, p.env, p.sha), "id", None))
        if existing is not None:          # a promotion's auto-deploy (or a person) deploys it already
            await self._db(gq.settle, service=p.service, env=p.env, sha=p.sha, deployment_id=existing)
            return Handled(p.service, p.env, p.sha, existing, None, new=False)
        dep_id: str | None = None
        refused: str | None = None
        try:
            dep_id = await self.runner.deploy(p.service, p.env, rev=p.sha, strategy=None, actor=f"gitops:{source}")
        except ShipyardError as exc:
            refused = str(exc)
        except Exception as exc:          # recorded as refused: the sha is handled, not retried in a loop
            log.exception("gitops deploy of %s/%s %s failed", p.service, p.env, p.sha)
            refused = f"internal error ({exc.__class__.__name__}, logged by the server)"
        await self._db(gq.settle, service=p.service, env=p.env, sha=p.sha, deployment_id=dep_id, refused=refused)
        where = f"{p.repo}@{p.branch} {p.sha[:12]}"
        if dep_id is not None:
            by = f" by {pusher}" if pusher else ""
            data = {"source": source, "delivery": delivery, "repo": p.repo, "branch": p.branch, "sha": p.sha,
                    "pusher": pusher}
            await self._db(lambda s: eq.add_event(s, "deploy.triggered", service=p.service, env=p.env,
                                                  deployment_id=dep_id, data=data,
                                                  message=f"gitops ({source}): {where}{by}"))
            self.say(f"gitops: {p.service}/{p.env}: {where} ({source}): deployment {dep_id}")
        else:
            self.say(f"gitops: {p.service}/{p.env}: {where} ({source}) refused: {refused}")
        return Handled(p.service, p.env, p.sha, dep_id, refused, new=True)

    # ---- webhooks ---------------------------------------------------------------------------------
    async def receive(self, headers: Mapping[str, str], body: bytes) -> HookOutcome:
        """A push webhook: authenticated by its provider's signature or token, replays refused (HookRefused)."""
        if "x-hub-signature-256" in headers or "x-github-event" in headers:
            source, secret = "github", self.secrets.github
        elif "x-gitlab-token" in headers or "x-gitlab-event" in headers:
            source, secret = "gitlab", self.secrets.gitlab
        else:
            raise HookRefused(401, "unsigned: send GitHub's X-Hub-Signature-256 or GitLab's X-Gitlab-Token")
        if secret is None:
            why = self.secrets.missing.get(source) or f"serve.webhooks.{_SECRET_KEY[source]} is not configured"
            raise HookRefused(403, f"{source} webhooks are not accepted here: {why}")
        if source == "github":
            ok = g.verify_github(secret, body, headers.get("x-hub-signature-256"))
            event, wanted, delivery = headers.get("x-github-event", ""), "push", headers.get("x-github-delivery")
        else:
            ok = g.verify_gitlab(secret, headers.get("x-gitlab-token"))
            event, wanted, delivery = headers.get("x-gitlab-event", ""), "Push Hook", \
                headers.get("x-gitlab-event-uuid")
        if not ok:
            raise HookRefused(401, f"the {source} signature does not match (check the webhook's secret)")
        if not delivery or len(delivery) > 255:
            raise HookRefused(400, f"the {source} delivery id header is missing or too long")
        push = (g.parse_github if source == "github" else g.parse_gitlab)(body) if event == wanted else None
        if not await self._db(gq.first_delivery, source, delivery):
            raise HookRefused(409, f"{source} delivery {delivery} was received before (a replay)")
        if push is None:
            return HookOutcome(ignored=f"ignored: a {event or 'untyped'} event, not a push")
        skip = g.ignored_because(push, {w.branch for w in self.watched})
        if skip is not None:
            return HookOutcome(ignored=skip)
        repos = g.matching_repos(self.config.repos, push)
        watched_repos = [r for r in repos if any(w.repo == r for w in self.watched)]
        if not watched_repos:
            named = push.names[0] if push.names else (push.urls[0] if push.urls else "?")
            return HookOutcome(ignored=f"ignored: no configured repo with a service matches {named}")
        assert push.branch is not None
        handled: list[Handled] = []
        for repo in watched_repos:
            handled += await self.moved(repo, push.branch, push.after, source=source, delivery=delivery,
                                        pusher=push.pusher or None)
        return HookOutcome(handled=handled)


_SECRET_KEY = {"github": "github_secret", "gitlab": "gitlab_token"}


def resolve_secrets(webhooks: Any, fill: Callable[[str, str], str]) -> WebhookSecrets:
    """The configured webhook secrets through `fill` (the project's ${secret:...} resolver); one that
    cannot be resolved leaves its provider refused with the reason (the server still starts)."""
    got: dict[str, str] = {}
    missing: dict[str, str] = {}
    for source, key in _SECRET_KEY.items():
        text = getattr(webhooks, key)
        if not text:
            continue
        try:
            got[source] = fill(text, f"serve.webhooks.{key}")
        except ShipyardError as exc:
            missing[source] = str(exc)
    return WebhookSecrets(github=got.get("github") or None, gitlab=got.get("gitlab") or None, missing=missing)
