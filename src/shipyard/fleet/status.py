"""`shipyard repos status`: where every repo stands, read from local state only (plus an optional fetch).

Per repo: the checked-out branch, uncommitted changes, and for each environment's branch how the local
branch compares with origin's (ahead/behind), and the newest deploy tag. Reading stays local so the
command is instant and works offline; `--fetch` brings origin's side up to date first.
"""

from __future__ import annotations

from typing import Any

from shipyard.errors import GitError
from shipyard.fleet.inventory import REMOTE, RepoSpec, ensure_workspace, local_state
from shipyard.fleet.tags import tag_glob


async def _ahead_behind(spec: RepoSpec, local: str, remote: str) -> tuple[int, int]:
    out = await spec.git.out("rev-list", "--left-right", "--count", f"{local}...{remote}", "--")
    ahead, behind = out.split()
    return int(ahead), int(behind)


async def repo_status(spec: RepoSpec, config: Any) -> dict[str, Any]:
    """One repo's row (a plain dict, the same for the table and --json); `error` set if unreadable."""
    row: dict[str, Any] = {"repo": spec.name, "path": str(spec.path), "url": spec.url, "groups": list(spec.groups),
                           "branch": None, "head": None, "dirty": 0, "untracked": 0, "envs": {},
                           "last_tag": None, "error": None}
    try:
        await ensure_workspace(spec)
        state = await local_state(spec, untracked=True)
    except GitError as err:
        row["error"] = str(err).removeprefix(f"{spec.name}: ")
        return row
    row.update(kind="bare" if state.bare else "clone", branch=state.branch, head=state.head,
               dirty=len(state.changed), untracked=state.untracked)
    refs_out = await spec.git.out("for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/",
                                  f"refs/remotes/{REMOTE}/")
    refs = dict(line.split(" ", 1) for line in refs_out.splitlines())
    for env, e in config.environments.items():
        local = None if state.bare else refs.get(f"refs/heads/{e.branch}")
        remote = refs.get(f"refs/remotes/{REMOTE}/{e.branch}")
        info: dict[str, Any] = {"branch": e.branch, "local": local, "remote": remote, "ahead": None, "behind": None}
        if local and remote:
            info["ahead"], info["behind"] = (0, 0) if local == remote else await _ahead_behind(spec, local, remote)
        row["envs"][env] = info
    globs = [tag_glob(e.tag, env) for env, e in config.environments.items() if e.tag]
    if globs:
        row["last_tag"] = await spec.git.out("for-each-ref", "--sort=-creatordate", "--count=1",
                                             "--format=%(refname:short)", *globs) or None
    return row


def env_cell(info: dict[str, Any]) -> str:
    """`=`, `↑2`, `↓1`, `↑2 ↓1`, `no local`, `not on origin` for one env branch of one repo."""
    if info["remote"] is None:
        return "not on origin" if info["local"] else "-"
    if info["local"] is None:
        return "no local"
    ahead, behind = info["ahead"], info["behind"]
    if not ahead and not behind:
        return "="
    return " ".join(p for p in (f"↑{ahead}" if ahead else "", f"↓{behind}" if behind else "") if p)
