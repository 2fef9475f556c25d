"""What the fleet is and what state each repo is in: selection, readiness checks, fetch, facts.

Nothing here changes a user's branches, index or working tree. Readiness is checked for every selected
repo before anything else happens, and all problems are reported together (one line per repo), because a
multi-repo operation that stops at the first bad repo is how an env ends up half promoted.

Where git runs for a repo: its working clone (`path`) when configured, so the user's credentials, hooks and
object store are used and merge objects land where the user will want them; a repo with only a `url` gets
a bare workspace of shipyard's own under `.shipyard/fleet/<name>.git` with an ordinary `origin` remote.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipyard.errors import GitError, UsageError
from shipyard.fleet.git import Git

REMOTE = "origin"
FLEET_DIR = Path(".shipyard") / "fleet"
AHEAD_LIMIT = 500           # commits listed per branch pair; the count stays exact


@dataclass(frozen=True)
class RepoSpec:
    """One configured repo and the directory git runs in for it."""

    name: str
    path: Path
    url: str | None
    managed: bool               # True: shipyard's bare workspace for a url-only repo
    groups: tuple[str, ...] = ()

    @property
    def git(self) -> Git:
        return Git(self.path, self.name)


def resolve_url(url: str | None, root: Path) -> str | None:
    """A local path to a bare origin is taken relative to shipyard.yaml, like `path` is."""
    if url and "://" not in url and ":" not in url:
        return str((root / url).resolve())
    return url


def select_repos(config: Any, root: Path, *, only: Sequence[str] = (), group: str | None = None) -> list[RepoSpec]:
    """The repos a command acts on, in config order: all, `--only a,b`, or `--group g` (both: intersection)."""
    names = list(config.repos)
    if not names:
        raise UsageError("no repos configured: add a `repos:` section to shipyard.yaml")
    wanted = [n.strip() for item in only for n in item.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in config.repos]
    if unknown:
        raise UsageError(f"unknown repo {', '.join(map(repr, unknown))} (known: {', '.join(names)})")
    if wanted:
        names = [n for n in names if n in wanted]
    if group is not None:
        in_group = set(config.repos_in_group(group))
        if not in_group:
            groups = sorted({g for r in config.repos.values() for g in r.groups})
            raise UsageError(f"no repo is in group {group!r} (groups: {', '.join(groups) or 'none'})")
        names = [n for n in names if n in in_group]
        if not names:
            raise UsageError(f"no repo is both in group {group!r} and in --only")
    specs = []
    for name in names:
        repo = config.repos[name]
        url = resolve_url(repo.url, root)
        if repo.path is None and url:
            specs.append(RepoSpec(name, (root / FLEET_DIR / f"{name}.git").resolve(), url, True, tuple(repo.groups)))
        else:
            specs.append(RepoSpec(name, config.repo_path(name), url, False, tuple(repo.groups)))
    return specs


async def ensure_workspace(spec: RepoSpec) -> None:
    """Create the bare workspace of a url-only repo (atomically: a half-made one is never left)."""
    if not spec.managed or (spec.path / "HEAD").exists():
        return
    spec.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = spec.path.with_name(f".{spec.path.name}.tmp{os.getpid()}")
    git = Git(spec.path.parent, spec.name)
    await git.run("init", "--quiet", "--bare", str(tmp))
    await Git(tmp, spec.name).run("remote", "add", REMOTE, spec.url or "")
    os.replace(tmp, spec.path)


def _kind(path: Path) -> str:
    if (path / ".git").exists():
        return "worktree"
    if (path / "HEAD").is_file() and (path / "objects").is_dir():
        return "bare"
    return "none"


@dataclass(frozen=True)
class LocalState:
    """What `git status` says about a working clone (or that it is bare)."""

    bare: bool
    branch: str | None               # None: detached HEAD
    head: str | None
    changed: tuple[str, ...]         # tracked paths with staged or unstaged changes (or conflicts)
    untracked: int = 0


def parse_status_v2(text: str) -> LocalState:
    """Parse `git status --porcelain=v2 --branch`: the branch header lines and one line per change."""
    branch: str | None = None
    head: str | None = None
    changed: list[str] = []
    untracked = 0
    for line in text.splitlines():
        if line.startswith("# branch.head "):
            value = line.split(" ", 2)[2]
            branch = None if value == "(detached)" else value
        elif line.startswith("# branch.oid "):
            value = line.split(" ", 2)[2]
            head = None if value == "(initial)" else value
        elif line.startswith(("1 ", "u ")):
            changed.append(line.split(" ", 8 if line[0] == "1" else 10)[-1])
        elif line.startswith("2 "):
            changed.append(line.split(" ", 9)[-1].split("\t")[0])
        elif line.startswith("? "):
            untracked += 1
    return LocalState(False, branch, head, tuple(changed), untracked)


async def local_state(spec: RepoSpec, *, untracked: bool = False) -> LocalState:
    """Branch, head and changes of the repo's working clone; GitError if it is not a usable repo."""
    if spec.managed:
        return LocalState(True, None, None, ())
    kind = _kind(spec.path)
    if kind == "none":
        if not spec.path.exists():
            hint = f" (clone it: git clone {spec.url} {spec.path})" if spec.url else ""
            raise GitError(f"{spec.name}: {spec.path} does not exist{hint}")
        raise GitError(f"{spec.name}: {spec.path} is not a git repository")
    if kind == "bare":
        return LocalState(True, None, None, ())
    res = await spec.git.run("status", "--porcelain=v2", "--branch", "--no-ahead-behind",
                             f"--untracked-files={'normal' if untracked else 'no'}", check=False)
    if not res.ok:
        raise GitError(f"{spec.name}: {spec.path} is not a usable git repository: {res.last_error_line()}")
    return parse_status_v2(res.stdout)


@dataclass(frozen=True)
class Readiness:
    """Whether a repo can take part in a write operation, and what the check learned on the way (the
    working tree's state, the committer identity) so later phases need not ask git again."""

    problem: str | None
    state: LocalState | None = None
    ident: str | None = None


def parse_var_list(text: str) -> dict[str, str]:
    """`git var -l` (config and logical variables) as a dict; the first value of a repeated key wins."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key not in out:
            out[key] = value
    return out


def ident_problem(ident: str | None) -> str | None:
    """Why git would refuse this committer identity (empty name, guessed host-less e-mail), or None."""
    name, _, rest = (ident or "").partition(" <")
    email = rest.split(">", 1)[0]
    if not ident or not name.strip() or not email or email.endswith("(none)"):
        return "git does not know who you are: set user.name and user.email (git config)"
    return None


async def readiness(spec: RepoSpec, *, need_clean: bool = True, need_ident: bool = True) -> Readiness:
    """Why this repo cannot take part in a write operation (or not). Reads only local state: `git status`
    and `git var -l` (remote URL and identity in one call)."""
    try:
        if spec.managed:
            await ensure_workspace(spec)
        state = await local_state(spec)
    except GitError as err:
        return Readiness(str(err).removeprefix(f"{spec.name}: "))
    if not state.bare:
        if state.branch is None:
            return Readiness(f"detached HEAD at {(state.head or '?')[:8]}; check out a branch first", state)
        if need_clean and state.changed:
            shown = ", ".join(state.changed[:3]) + (", ..." if len(state.changed) > 3 else "")
            return Readiness(f"working tree has {len(state.changed)} uncommitted change(s) ({shown}); "
                             "commit or stash them", state)
    variables = parse_var_list((await spec.git.run("var", "-l", check=False)).stdout)
    if not variables.get(f"remote.{REMOTE}.url"):
        return Readiness(f"no remote {REMOTE!r} (add it: git remote add {REMOTE} URL)", state)
    ident = variables.get("GIT_COMMITTER_IDENT")
    if need_ident and (problem := ident_problem(ident)):
        return Readiness(problem, state)
    return Readiness(None, state, ident)


async def fetch(spec: RepoSpec, *, tags: bool = True) -> None:
    """Bring the remote-tracking branches (and tags, never overwriting a local one) up to date.

    No automatic gc/maintenance in the middle of a promotion: git would start it in the background of
    every repo at once; the user's next own fetch or commit runs it as usual.
    """
    args = ["fetch", "--prune", "--quiet", "--no-auto-maintenance", "--no-show-forced-updates",
            *(["--tags"] if tags else []), REMOTE]
    await spec.git.network(*args)


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str


@dataclass(frozen=True)
class RepoFacts:
    """What the planner needs to know about one repo, read after a fetch (remote tips are the truth)."""

    repo: str
    tips: dict[str, str]                                   # branch -> origin's sha
    tags: dict[str, str] = field(default_factory=dict)     # tag -> peeled commit sha
    ahead: dict[tuple[str, str], tuple[Commit, ...]] = field(default_factory=dict)
    ahead_count: dict[tuple[str, str], int] = field(default_factory=dict)

    def commits(self, source: str, target: str) -> tuple[Commit, ...]:
        """Commits on `source` that `target` does not have (newest first)."""
        return self.ahead.get((source, target), ())


async def remote_refs(spec: RepoSpec) -> tuple[dict[str, str], dict[str, str]]:
    """(origin branch -> sha, tag -> peeled commit sha) as this repo knows them locally."""
    out = await spec.git.out("for-each-ref", "--format=%(refname)%00%(objectname)%00%(*objectname)",
                             f"refs/remotes/{REMOTE}/", "refs/tags/")
    branches: dict[str, str] = {}
    tags: dict[str, str] = {}
    prefix = f"refs/remotes/{REMOTE}/"
    for line in out.splitlines():
        ref, sha, peeled = [*line.split("\0"), "", ""][:3]
        if ref.startswith(prefix) and ref != f"{prefix}HEAD":
            branches[ref[len(prefix):]] = sha
        elif ref.startswith("refs/tags/"):
            tags[ref[len("refs/tags/"):]] = peeled or sha
    return branches, tags


async def commits_between(git: Git, source: str, target: str) -> tuple[tuple[Commit, ...], int]:
    """Commits reachable from `source` but not `target`, newest first, and how many in all (one git call
    unless there are more than AHEAD_LIMIT)."""
    out = await git.out("log", f"--max-count={AHEAD_LIMIT}", "--format=%H%x1f%s", source, f"^{target}", "--")
    commits = tuple(Commit(*line.split("\x1f", 1)) for line in out.splitlines() if "\x1f" in line)
    count = len(commits)
    if count >= AHEAD_LIMIT:
        count = int(await git.out("rev-list", "--count", source, f"^{target}", "--"))
    return commits, count


async def gather(spec: RepoSpec, branches: Iterable[str], pairs: Iterable[tuple[str, str]]) -> RepoFacts:
    """Remote tips of `branches` and, per (source, target) pair, the commits that would move.

    A pair member is a branch name (its origin tip is used) or a full sha (a pinned commit, for resume).
    A branch missing on the remote is a GitError naming it (the caller reports it as not ready).
    """
    tips, tags = await remote_refs(spec)
    missing = [b for b in branches if b not in tips]
    if missing:
        raise GitError(f"{spec.name}: branch {', '.join(missing)} not on {REMOTE} "
                       f"(create and push it, or check `branch:` in shipyard.yaml)")
    facts = RepoFacts(spec.name, dict(tips), tags)
    for source, target in pairs:
        commits, count = await commits_between(spec.git, tips.get(source, source), tips.get(target, target))
        facts.ahead[(source, target)] = commits
        facts.ahead_count[(source, target)] = count
    return facts
