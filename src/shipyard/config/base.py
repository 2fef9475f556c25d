"""Shared building blocks of the config models: the strict base class and the small value types.

Names (of repos, environments, services, alarms, channels) end up in deployment ids, git tags, file
paths and URLs, so they are restricted once here instead of being escaped everywhere they are used.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ENV_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NAME_MAX = 63
"""Longest name: a service and an environment name together go into instance ids, log file names, release
paths and 128-character columns, so each stays well inside every limit (a DNS label's length)."""
ENV_VAR_MAX = 255
_ADDRESS = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})")


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, because a typo silently ignored
    (`batchsize: 2`) is a deploy that does something other than what was written."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _shown(value: str) -> str:
    """A name as quoted in an error: a very long one is cut, with its length said."""
    return repr(value) if len(value) <= 80 else f"{value[:40]!r}... ({len(value)} characters)"


def check_name(value: str) -> str:
    """A name of a repo, environment, service, alarm or channel (see the module docstring)."""
    if len(value) > NAME_MAX:
        raise ValueError(f"invalid name {_shown(value)}: at most {NAME_MAX} characters")
    if not _NAME.fullmatch(value):
        raise ValueError(f"invalid name {_shown(value)}: use letters, digits, '-', '_' and '.', "
                         "starting with a letter or digit")
    return value


def check_env_var(value: str) -> str:
    """An environment variable name: letters, digits and '_', not starting with a digit."""
    if len(value) > ENV_VAR_MAX or not _ENV_VAR.fullmatch(value):
        raise ValueError(f"invalid environment variable name {_shown(value)}: use letters, digits and '_', "
                         f"not starting with a digit, at most {ENV_VAR_MAX} characters")
    return value


def _scalar_to_str(value: object) -> object:
    """Env values are strings for the process; accept YAML-ish scalars built in Python code too."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def check_address(value: str) -> str:
    """Validate a "host:port" listen address (IPv6 hosts in brackets)."""
    match = _ADDRESS.fullmatch(value.strip())
    if not match or not 0 < int(match.group("port")) < 65536:
        raise ValueError(f'invalid address {value!r}: expected "host:port", e.g. "127.0.0.1:8000"')
    return value.strip()


Name = Annotated[str, AfterValidator(check_name)]
EnvVarName = Annotated[str, AfterValidator(check_env_var)]
EnvValue = Annotated[str, BeforeValidator(_scalar_to_str)]
Address = Annotated[str, AfterValidator(check_address)]


class FieldProblem(ValueError):
    """A ValueError raised by a model-level check that knows which nested key is wrong.

    Pydantic reports model validators at the model's location; the loader appends `path` so the error
    points at, say, the second canary step's `weight` line instead of the whole `strategy` block.
    """

    def __init__(self, message: str, *path: str | int) -> None:
        super().__init__(message)
        self.path = path
