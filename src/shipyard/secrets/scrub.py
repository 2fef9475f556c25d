"""The environment every process shipyard starts begins with: a few harmless variables of the user's,
never a secret. The agent, the apps' log processes, apps, hooks, builds, migrations, git and exec health
probes all start from `scrubbed()`; what a child must have on top (an instance's resolved values, git's
no-prompt settings) is added by the caller as `extra`, after scrubbing.

Policy (docs/secrets.md repeats it):
- Allow-list: a variable passes only if its name matches BASE (every process) or the purpose's list
  (PYTHON for shipyard's own processes, GIT for git). An unknown variable is dropped: the shell that ran
  `shipyard deploy` may hold AWS keys, a GitHub token, the master key, other projects' secrets.
- Deny-list, checked after and winning over the allow-list: the secret providers' variables (AWS_*,
  SHIPYARD_MASTER_KEY, SHIPYARD_SECRET_*, GITHUB_TOKEN, GH_TOKEN), names that say what they hold (*TOKEN*,
  *SECRET*, *PASSWORD*, ...), every `secrets.env_prefix` this process configured and every variable the
  env provider read a secret from (`deny_prefix`, `deny_name`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase

BASE = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_*", "TZ", "TMPDIR", "TERM")
PYTHON = ("PYTHONPATH", "VIRTUAL_ENV")
GIT = ("GIT_*", "SSH_AUTH_SOCK", "XDG_CONFIG_HOME", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
       "http_proxy", "https_proxy", "no_proxy", "all_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR")
DENY = ("AWS_*", "SHIPYARD_MASTER_KEY", "SHIPYARD_SECRET_*", "GITHUB_TOKEN", "GH_TOKEN", "*TOKEN*", "*SECRET*",
        "*PASSWORD*", "*PASSWD*", "*CREDENTIAL*", "*PRIVATE_KEY*", "*API_KEY*", "*ACCESS_KEY*")

# Process-wide on purpose: denying more than needed is harmless, and spawn points (the agent's start,
# git) have no project context to ask. Only ever grows.
_denied_prefixes: set[str] = set()
_denied_names: set[str] = set()


def deny_prefix(prefix: str) -> None:
    """Never pass on variables starting with `prefix` (an env provider's `env_prefix`)."""
    if prefix:
        _denied_prefixes.add(prefix)


def deny_name(*names: str) -> None:
    """Never pass on these variables (the env provider read secrets from them)."""
    _denied_names.update(n for n in names if n)


def denied(name: str) -> bool:
    upper = name.upper()
    return (name in _denied_names or name.startswith(tuple(_denied_prefixes))
            or any(fnmatchcase(upper, pattern) for pattern in DENY))


def passes(name: str, allow: Iterable[str] = ()) -> bool:
    """Whether the variable `name` of the user's environment may reach a child (with `allow` on top of
    BASE)."""
    return any(fnmatchcase(name, pattern) for pattern in (*BASE, *allow)) and not denied(name)


def scrubbed(environ: Mapping[str, str] | None = None, *, allow: Iterable[str] = (),
             extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process: what passes of `environ` (default: this process's), then
    `extra` as given (values the caller means the child to have, secrets included)."""
    source = os.environ if environ is None else environ
    patterns = tuple(allow)
    env = {k: v for k, v in source.items() if passes(k, patterns)}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(extra or {})
    return env
