"""The placeholders of a service's `run` command, and where each is filled: pure text functions.

`run` is split like a shell would (no shell runs it), then each argument gets its placeholders filled by
whoever knows the value: the engine fills `{env}` and `{publish_dir}`, the target that picks the port fills
`{port}`, `$PORT` and `${PORT}`, and the agent that names the instance fills `{instance}`. Only these exact
spellings are replaced, so shell braces (`awk '{print $1}'`) and other `$NAME`s are passed as written (a
`sh -c '...'` in `run` expands those from the instance's environment at run time; shipyard never puts a
variable's value, which may be a secret, into argv).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping

PLACEHOLDERS = ("port", "publish_dir", "instance", "env")
_BRACED = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
_PORT_VARIABLE = re.compile(r"\$(?:PORT(?![A-Za-z0-9_])|\{PORT\})")


def fill(text: str, values: Mapping[str, str]) -> str:
    """`text` with `{name}` replaced for every name in `values` (the other placeholders are left for
    whoever fills them later); a `port` value also replaces `$PORT` and `${PORT}`."""
    out = _BRACED.sub(lambda m: values.get(m.group(1), m.group(0)), text)
    if "port" in values:
        out = _PORT_VARIABLE.sub(lambda _: values["port"], out)
    return out


def fill_argv(argv: Iterable[str], values: Mapping[str, str]) -> list[str]:
    return [fill(arg, values) for arg in argv]


def split_run(run: str) -> list[str]:
    """`run` as argv, split like a shell would; ValueError (unbalanced quotes, nothing to run) otherwise."""
    argv = shlex.split(run)
    if not argv:
        raise ValueError("the command is empty")
    return argv
