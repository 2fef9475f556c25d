"""GitOps, the pure part: which branches are watched, what a moved branch deploys, and the push webhooks
of GitHub and GitLab (signature checks, payload parsing, matching a payload to a configured repo).

Watched: every (repo, branch) where `branch` is the branch of an environment with `auto_deploy: true` and
the repo holds at least one service. A tip seen there queues one deploy per (service of that repo, env
on that branch) at that sha; the store makes it at most one per (service, env, sha) ever (watcher.py).

Matching a webhook to a repo is by URL: both the configured `url` and every URL the payload names
(GitHub's clone_url, ssh_url, git_url, html_url; GitLab's git_http_url, git_ssh_url, web_url) are reduced
to `host/path` (scheme, user, port, a `.git` suffix and trailing slashes dropped, lower-cased), so
`git@github.com:Org/App.git`, `https://github.com/org/app` and `ssh://git@github.com:22/org/app.git` are
one repo. A payload's `full_name` (GitHub) or `path_with_namespace` (GitLab) also matches a configured URL
whose path is exactly that. A URL without a host (a local path or file://) keeps its path as written.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shipyard.errors import UsageError

ZERO_SHA = "0" * 40
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_SCP = re.compile(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>(?!//).+)$")     # git@host:org/repo.git
SOURCES = ("poll", "github", "gitlab")


@dataclass(frozen=True)
class Watch:
    """One branch of one repo the watcher polls, and what a new tip there deploys."""

    repo: str
    branch: str
    location: str                      # what `git ls-remote` is given: the url, else the repo's path
    targets: tuple[tuple[str, str], ...]   # (service, env) pairs deployed at a new tip


@dataclass(frozen=True)
class Push:
    """A push webhook, parsed: the provider's view of which repo and branch moved to which sha."""

    source: str                        # github | gitlab
    ref: str
    after: str
    urls: tuple[str, ...]
    names: tuple[str, ...]             # full_name / path_with_namespace
    pusher: str

    @property
    def branch(self) -> str | None:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else None


@dataclass(frozen=True)
class Planned:
    service: str
    env: str
    sha: str
    repo: str
    branch: str


def watches(config: Any) -> list[Watch]:
    """The (repo, branch) pairs to watch, in config order; empty when no env has auto_deploy."""
    out: list[Watch] = []
    auto = [(name, env.branch) for name, env in config.environments.items() if env.auto_deploy]
    for repo_name, repo in config.repos.items():
        services = [name for name, svc in config.services.items() if svc.repo == repo_name]
        if not services:
            continue
        for branch in dict.fromkeys(b for _, b in auto):
            targets = tuple((svc, env) for env, b in auto if b == branch for svc in services)
            location = repo.url or str(config.repo_path(repo_name))
            out.append(Watch(repo_name, branch, location, targets))
    return out


def plan(watched: Iterable[Watch], repo: str, branch: str, sha: str) -> list[Planned]:
    """The deploys a tip `sha` of `repo`'s `branch` asks for (nothing if that branch is not watched)."""
    return [Planned(svc, env, sha, repo, branch) for w in watched if (w.repo, w.branch) == (repo, branch)
            for svc, env in w.targets]


def parse_ls_remote(output: str, branch: str) -> str | None:
    """The sha of refs/heads/<branch> in `git ls-remote` output, or None when the branch is absent."""
    want = f"refs/heads/{branch}"
    for line in output.splitlines():
        sha, _, ref = line.partition("\t")
        if ref.strip() == want and _SHA.fullmatch(sha.strip()):
            return sha.strip()
    return None


# ---- URLs ------------------------------------------------------------------------------------------
def normalise_url(url: str) -> str:
    """`host/path` of a git URL (see the module docstring); a local path stays as written, minus `.git`."""
    text = url.strip()
    scp = _SCP.match(text) if "://" not in text else None
    if scp is not None:
        host, path = scp.group("host"), scp.group("path")
    else:
        parts = urlsplit(text)
        if parts.scheme in ("", "file") or not parts.hostname:
            return _strip(parts.path if parts.scheme == "file" else text)
        host, path = parts.hostname, parts.path
    return f"{host.lower()}/{_strip(path).strip('/').lower()}"


def _strip(path: str) -> str:
    path = path.rstrip("/")
    return path.removesuffix(".git").rstrip("/") or path


def matching_repos(repos: Mapping[str, Any], push: Push) -> list[str]:
    """Configured repos (name -> Repo with `url`) the push is about, in config order."""
    urls = {normalise_url(u) for u in push.urls if u}
    names = {n.strip("/").lower() for n in push.names if n}
    out = []
    for name, repo in repos.items():
        if not repo.url:
            continue
        mine = normalise_url(repo.url)
        if mine in urls or mine.partition("/")[2] in names:
            out.append(name)
    return out


# ---- webhook authentication --------------------------------------------------------------------------
def github_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_github(secret: str, body: bytes, header: str | None) -> bool:
    """X-Hub-Signature-256 is `sha256=<hex HMAC-SHA256 of the raw body>`; a missing or malformed one fails."""
    if not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(github_signature(secret, body).encode(), header.strip().lower().encode())


def verify_gitlab(token: str, header: str | None) -> bool:
    """X-Gitlab-Token is the secret token itself, compared in constant time."""
    if not header:
        return False
    return hmac.compare_digest(token.encode(), header.encode())


# ---- payloads ---------------------------------------------------------------------------------------
def _load(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"the body is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise UsageError("the body is not a JSON object")
    return data


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _push(source: str, ref: str, after: str, urls: Iterable[str], names: Iterable[str], pusher: str) -> Push:
    if not ref:
        raise UsageError("the push has no `ref`")
    after = after.lower()
    if not _SHA.fullmatch(after):
        raise UsageError("the push's `after` is not a commit sha")
    # The pusher's name goes into an event message: one line, bounded.
    return Push(source, ref, after, tuple(u for u in urls if u), tuple(n for n in names if n),
                " ".join(pusher.split())[:255])


def parse_github(body: bytes) -> Push:
    """A GitHub `push` event: ref, after, repository.{clone_url, ssh_url, git_url, html_url, full_name}."""
    data = _load(body)
    repo = _section(data, "repository")
    pusher = _text(_section(data, "pusher"), "name") or _text(_section(data, "sender"), "login")
    return _push("github", _text(data, "ref"), _text(data, "after"),
                 (_text(repo, k) for k in ("clone_url", "ssh_url", "git_url", "html_url")),
                 [_text(repo, "full_name")], pusher)


def parse_gitlab(body: bytes) -> Push:
    """A GitLab `Push Hook`: ref, after (or checkout_sha), project.{git_http_url, git_ssh_url, web_url,
    path_with_namespace}."""
    data = _load(body)
    project = _section(data, "project")
    return _push("gitlab", _text(data, "ref"), _text(data, "after") or _text(data, "checkout_sha"),
                 (_text(project, k) for k in ("git_http_url", "git_ssh_url", "web_url", "http_url", "ssh_url")),
                 [_text(project, "path_with_namespace")], _text(data, "user_username") or _text(data, "user_name"))


def ignored_because(push: Push, watched_branches: set[str]) -> str | None:
    """Why a push deploys nothing (a delete, a tag, a branch no auto_deploy env uses), or None."""
    if push.after == ZERO_SHA:
        return f"ignored: {push.ref} was deleted"
    if push.branch is None:
        return f"ignored: {push.ref} is not a branch"
    if push.branch not in watched_branches:
        return f"ignored: no auto_deploy environment deploys branch {push.branch}"
    return None
