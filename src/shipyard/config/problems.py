"""Turn pydantic's validation errors into one-line ConfigErrors located at `file:line` and a dotted key.

Pydantic locations name model fields, dict keys, list indexes and also union members (a discriminator
tag such as `rolling`); walking the actual data along the location tells which elements are real keys,
so the line is the one the user wrote and the key reads like the YAML (`...strategy.batch_size`).
"""

from __future__ import annotations

import difflib
from functools import cache
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from shipyard.config.base import FieldProblem
from shipyard.config.source import Path, SourceMap, dotted
from shipyard.errors import ConfigError

Loc = tuple[str | int, ...]


def _resolve(data: Any, loc: Loc, *, keep_last: bool) -> tuple[Path, Path]:
    """Split `loc` into the data path that exists and the missing tail (only kept when asked)."""
    path: list[str | int] = []
    current = data
    for index, part in enumerate(loc):
        in_dict = isinstance(current, dict) and isinstance(part, str) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_dict or in_list:
            path.append(part)
            current = current[part]
        elif keep_last and index == len(loc) - 1 and part != "[key]":
            return tuple(path), (part,)
        # otherwise: a union tag, a union member label or "[key]" -- not a data key
    return tuple(path), ()


@cache
def _schema() -> dict[str, Any]:
    from shipyard.config.model import Config

    return Config.model_json_schema()


def _deref(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = _schema()["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _child(node: dict[str, Any], part: str | int) -> dict[str, Any] | None:
    node = _deref(node)
    if isinstance(part, str) and part in node.get("properties", {}):
        return dict(node["properties"][part])
    if isinstance(part, str) and isinstance(node.get("additionalProperties"), dict):
        return dict(node["additionalProperties"])
    if isinstance(part, int) and isinstance(node.get("items"), dict):
        return dict(node["items"])
    mapping = node.get("discriminator", {}).get("mapping", {})
    if part in mapping:
        return {"$ref": mapping[part]}
    for option in node.get("oneOf", []) + node.get("anyOf", []):
        found = _child(option, part)
        if found is not None:
            return found
    return None


def _schema_at(loc: Loc) -> dict[str, Any]:
    node: dict[str, Any] = _schema()
    for part in loc:
        node = _child(node, part) or node
    node = _deref(node)
    for option in node.get("anyOf", []):              # `X | None`: the X
        if option.get("type") != "null":
            return _deref(option)
    return node


def _union_tags(loc: Loc) -> list[str]:
    node = _schema_at(loc)
    return list(node.get("discriminator", {}).get("mapping", {}))


def _allowed_keys(loc: Loc) -> list[str]:
    return list(_schema_at(loc).get("properties", {}))


def _got(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(err: ErrorDetails, loc: Loc) -> tuple[str, str | None]:
    """(message, extra key appended to the path) for one pydantic error."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "missing":
        return "is required", None
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        text = f"unknown key (did you mean {hint[0]!r}?)" if hint else "unknown key"
        return (f"{text}; allowed: {', '.join(allowed)}" if allowed else text), None
    if kind == "union_tag_invalid":
        tags = ", ".join(t.strip("'") for t in str(ctx.get("expected_tags", "")).split(", "))
        return f"unknown type {ctx.get('tag')!r}; expected one of: {tags}", "type"
    if kind == "union_tag_not_found":
        return f"missing `type`; expected one of: {', '.join(_union_tags(loc))}", "type"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping, got {_got(err['input'])}", None
    if kind == "too_short":
        count = ctx.get("min_length", 1)
        return f"needs at least {count} item{'s' if count != 1 else ''}", None
    if kind == "list_type":
        return f"expected a list, got {_got(err['input'])}", None
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", err["msg"])), None
    text = err["msg"][:1].lower() + err["msg"][1:]
    if not isinstance(err["input"], dict | list):
        text += f" (got {_got(err['input'])})"
    return text, None


def validation_problems(exc: ValidationError, data: Any, source: SourceMap, file: str) -> list[ConfigError]:
    """One ConfigError per pydantic error, located via `source`; duplicates (union members, values
    merged from `defaults` into several services) collapsed."""
    out: list[ConfigError] = []
    keys: set[str | None] = set()
    for err in exc.errors():
        loc: Loc = tuple(err["loc"])
        error = (err.get("ctx") or {}).get("error")
        extra_path = error.path if isinstance(error, FieldProblem) else ()
        message, extra_key = _message(err, loc)
        full = loc + tuple(extra_path) + ((extra_key,) if extra_key else ())
        keep_last = err["type"] == "missing" or bool(extra_path) or extra_key is not None
        path, tail = _resolve(data, full, keep_last=keep_last)
        problem = located(path + tail, message, source, file)
        if problem.key not in keys:                  # a non-discriminated union reports each member
            keys.add(problem.key)
            out.append(problem)
    return out


def located(path: Path, message: str, source: SourceMap, file: str) -> ConfigError:
    """A ConfigError for `path`, with the line (and key) of where the value was written."""
    origin = source.origin(path)
    line = source.line_for(origin)
    return ConfigError(message, file=file, line=line, key=dotted(origin) or None)


def unique_sorted(errors: list[ConfigError]) -> list[ConfigError]:
    """Drop exact repeats (a bad value under `defaults` fails in every service it is merged into)
    and order by line, keeping the original order within a line."""
    seen: set[tuple[str | None, int | None, str]] = set()
    result = []
    for err in errors:
        if (err.key, err.line, err.message) not in seen:
            seen.add((err.key, err.line, err.message))
            result.append(err)
    return sorted(result, key=lambda e: e.line or 0)
