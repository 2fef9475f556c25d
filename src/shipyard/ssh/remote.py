"""The one place an argv becomes the command line an SSH server hands to the login shell.

SSH carries a single string, which the remote user's shell parses. Every remote command shipyard runs is
an argv list, turned into that string here and nowhere else: each argument quoted with shlex (POSIX
single quotes), so spaces, quotes, `$(...)`, `;`, globs and newlines arrive as the bytes they were.
Something that needs a shell on the host runs `["sh", "-c", SCRIPT, "sh", value...]` with a constant
SCRIPT reading its values from "$1"...: values are never pasted into shell text.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def command_line(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """The shell-safe command line for `argv`, run with `env` added to its environment (through `env`,
    so it does not depend on the server's AcceptEnv; values are visible in the host's process list, so
    secrets go on stdin instead)."""
    if isinstance(argv, str | bytes):
        raise TypeError("argv must be a list of arguments, not a string")
    if not argv:
        raise ValueError("empty command")
    words = [_checked(arg) for arg in argv]
    if env:
        assigns = []
        for name, value in env.items():
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"invalid environment variable name {name!r}")
            assigns.append(f"{name}={_checked(value)}")
        if "=" in words[0]:
            raise ValueError(f"a command run with env cannot be named {words[0]!r} (it holds '=')")
        words = ["env", "--", *assigns, *words]
    return shlex.join(words)


def _checked(arg: str) -> str:
    if not isinstance(arg, str):
        raise TypeError(f"remote arguments are strings, not {type(arg).__name__}")
    if "\0" in arg:
        raise ValueError("a remote argument cannot contain a NUL byte")
    return arg
