"""`shipyard repos pull|push|checkout|fetch|exec`: one everyday git action per repo, said plainly.

Each action returns ok, failed or nothing (nothing to do), never raises for a git failure of its repo:
the command runs over all repos and the summary names every repo in each group. None of them forces
anything: pull and fetch into a local branch only fast-forward, push refuses a non-fast-forward (git's
own check), and a push with nothing to push is skipped without touching the network.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from shipyard.errors import GitError
from shipyard.fleet.git import NETWORK_TIMEOUT, run_process
from shipyard.fleet.inventory import REMOTE, RepoSpec, ensure_workspace, fetch, local_state
from shipyard.fleet.parallel import RepoOutcome
from shipyard.fleet.push import parse_porcelain

NO_WORKTREE = "no working copy (url-only repo: shipyard keeps a bare workspace)"


async def _refs(spec: RepoSpec, *patterns: str) -> dict[str, str]:
    out = await spec.git.out("for-each-ref", "--format=%(refname) %(objectname)", *patterns)
    return dict(line.split(" ", 1) for line in out.splitlines())


async def op_fetch(spec: RepoSpec, branch: str | None = None) -> RepoOutcome:
    """Fetch origin (all branches and tags, or just `branch`); nothing if no ref changed."""
    await ensure_workspace(spec)
    before = await _refs(spec, f"refs/remotes/{REMOTE}/", "refs/tags/")
    if branch:
        await spec.git.network("fetch", "--quiet", REMOTE, f"+refs/heads/{branch}:refs/remotes/{REMOTE}/{branch}")
    else:
        await fetch(spec)
    after = await _refs(spec, f"refs/remotes/{REMOTE}/", "refs/tags/")
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if not changed:
        return RepoOutcome("nothing", "up to date")
    short = [c.removeprefix(f"refs/remotes/{REMOTE}/").removeprefix("refs/tags/") for c in changed]
    return RepoOutcome("ok", f"updated {', '.join(short[:4])}{', ...' if len(short) > 4 else ''}")


async def op_pull(spec: RepoSpec, branch: str | None = None) -> RepoOutcome:
    """Fast-forward the current branch (or `branch`) from origin; never merges, never rebases."""
    state = await local_state(spec)
    if state.bare:
        return await op_fetch(spec, branch)
    target = branch or state.branch
    if target is None:
        return RepoOutcome("failed", "detached HEAD: check out a branch or pass --branch")
    ref = f"refs/heads/{target}"
    before = await spec.git.sha(ref)
    if target == state.branch:
        res = await spec.git.network("pull", "--ff-only", "--quiet", REMOTE, target, check=False)
    else:         # not checked out: fetch straight into the local branch (git allows fast-forwards only)
        res = await spec.git.network("fetch", "--quiet", REMOTE, f"{ref}:{ref}", check=False)
    if not res.ok:
        return RepoOutcome("failed", res.last_error_line())
    after = await spec.git.sha(ref)
    if before == after:
        return RepoOutcome("nothing", f"{target} already up to date")
    return RepoOutcome("ok", f"{target} {(before or 'new')[:8]} → {(after or '')[:8]}")


async def op_push(spec: RepoSpec, branch: str | None = None) -> RepoOutcome:
    """Push the current branch (or `branch`) to origin; skipped when origin already has every commit."""
    state = await local_state(spec)
    if state.bare:
        return RepoOutcome("nothing", NO_WORKTREE)
    target = branch or state.branch
    if target is None:
        return RepoOutcome("failed", "detached HEAD: check out a branch or pass --branch")
    local = await spec.git.sha(f"refs/heads/{target}")
    if local is None:
        return RepoOutcome("failed", f"no local branch {target}")
    remote = await spec.git.sha(f"refs/remotes/{REMOTE}/{target}")
    if remote is not None and (remote == local or await _is_ancestor(spec, local, remote)):
        return RepoOutcome("nothing", f"nothing to push ({REMOTE}/{target} has every commit)")
    res = await spec.git.network("push", "--porcelain", REMOTE, f"refs/heads/{target}:refs/heads/{target}",
                                 check=False)
    flags = parse_porcelain(res.stdout)
    flag, summary = flags.get(f"refs/heads/{target}", ("", ""))
    if res.ok and flag == "=":
        return RepoOutcome("nothing", "nothing to push")
    if not res.ok:
        return RepoOutcome("failed", f"{summary} {res.last_error_line()}".strip() if flag == "!" else
                           res.last_error_line())
    return RepoOutcome("ok", f"{target} {summary}".strip())


async def _is_ancestor(spec: RepoSpec, older: str, newer: str) -> bool:
    return (await spec.git.run("merge-base", "--is-ancestor", older, newer, check=False)).returncode == 0


async def op_checkout(spec: RepoSpec, branch: str) -> RepoOutcome:
    """Switch the working copy to `branch` (created from origin's if only that exists); git refuses when
    local changes would be overwritten, and that refusal is the repo's failure."""
    state = await local_state(spec)
    if state.bare:
        return RepoOutcome("nothing", NO_WORKTREE)
    if state.branch == branch:
        return RepoOutcome("nothing", f"already on {branch}")
    res = await spec.git.run("checkout", "--quiet", branch, "--", check=False)
    if not res.ok:
        return RepoOutcome("failed", res.last_error_line())
    return RepoOutcome("ok", f"{state.branch or 'detached'} → {branch}")


async def op_exec(spec: RepoSpec, argv: Sequence[str], *, timeout: float = NETWORK_TIMEOUT) -> RepoOutcome:
    """Run `argv` (no shell) in the repo's working copy; ok when it exits 0. Output is kept in `data`."""
    state = await local_state(spec)
    if state.bare:
        return RepoOutcome("nothing", NO_WORKTREE)
    try:
        res = await run_process(list(argv), cwd=spec.path, timeout=timeout,
                                env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "SHIPYARD_REPO": spec.name})
    except GitError as err:
        return RepoOutcome("failed", str(err))
    output = (res.stdout + res.stderr).rstrip()
    data = {"exit_code": res.returncode, "stdout": res.stdout, "stderr": res.stderr}
    if res.ok:
        last = output.splitlines()[-1] if output else ""
        return RepoOutcome("ok", last, data)
    return RepoOutcome("failed", f"exit {res.returncode}: {res.last_error_line()}", data)
