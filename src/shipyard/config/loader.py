"""Find, read and validate shipyard.yaml, reporting every problem as `file:line: key: message`.

`validate_config` collects all problems (for `shipyard config validate`); `load_config` raises
InvalidConfig, whose one-line text is the first problem plus how many more there are, and whose
`errors` holds them all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shipyard.config.merge import apply_defaults
from shipyard.config.model import LOADER_CONTEXT, Config
from shipyard.config.problems import located, unique_sorted, validation_problems
from shipyard.config.refs import reference_problems
from shipyard.config.source import read_yaml
from shipyard.errors import ConfigError

CONFIG_NAME = "shipyard.yaml"


class InvalidConfig(ConfigError):
    """Raised by load_config: the first problem's text, `errors` holding every problem found."""

    def __init__(self, errors: list[ConfigError]) -> None:
        first = errors[0]
        more = len(errors) - 1
        message = first.message
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''}; `shipyard config validate` lists all)"
        super().__init__(message, file=first.file, line=first.line, key=first.key)
        self.errors = errors


def find_config(start: Path | None = None) -> Path:
    """The nearest shipyard.yaml in `start` (default: cwd) or one of its parents."""
    origin = (start or Path.cwd()).resolve()
    for directory in (origin, *origin.parents):
        candidate = directory / CONFIG_NAME
        if candidate.is_file():
            return candidate
    raise ConfigError(f"no {CONFIG_NAME} found in {origin} or its parents; run `shipyard init`")


def check_text(text: str, file: str = CONFIG_NAME,
               environ: Mapping[str, str] | None = None) -> tuple[Config | None, list[ConfigError]]:
    """Validate config text: (the Config if there were no problems, every problem found)."""
    env = os.environ if environ is None else environ
    try:
        raw, source, problems = read_yaml(text, file, env)
    except ConfigError as exc:
        return None, [exc]
    data: Any = apply_defaults(raw, source.copy)
    config: Config | None = None
    try:
        config = Config.model_validate(data, context={LOADER_CONTEXT: True})
    except ValidationError as exc:
        unresolved = {p.key for p in problems}       # a failed ${VAR} also fails validation: say it once
        problems += [p for p in validation_problems(exc, data, source, file) if p.key not in unresolved]
    problems += [located(path, message, source, file) for path, message in reference_problems(data)]
    problems = unique_sorted(problems)
    return (None if problems else config), problems


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(path)) from None


def validate_config(path: Path | str, environ: Mapping[str, str] | None = None) -> list[ConfigError]:
    """Every problem in the config file at `path` (empty when it is valid)."""
    path = Path(path)
    try:
        text = _read(path)
    except ConfigError as exc:
        return [exc]
    return check_text(text, str(path), environ)[1]


def load_config(path: Path | str, environ: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate and validate `path`; raise InvalidConfig (a ConfigError) if anything is wrong.

    `environ` replaces os.environ for `${VAR}` interpolation (tests, `--env-file`).
    """
    path = Path(path)
    config, problems = check_text(_read(path), str(path), environ)
    if problems or config is None:
        raise InvalidConfig(problems or [ConfigError("invalid config", file=str(path))])
    config._source = path.resolve()
    return config


def config_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of shipyard.yaml, for editors and `shipyard config schema`."""
    schema = Config.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": "shipyard.yaml"}
