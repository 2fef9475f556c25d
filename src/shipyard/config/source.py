"""Read YAML into plain data while remembering the line of every key and list item.

PyYAML's constructed objects forget where they came from; walking the composed node tree ourselves keeps a
path -> line map so any later problem (pydantic, cross references) can name `file:line`. Scalars stay the
text that was written (only `null`/`~`/empty become None): pydantic converts "3" to 3 where a number is
wanted, while `branch: 2024`, `tag: 1.10` or an env value `on` keep their exact spelling instead of turning
into an int, a float 1.1 or True.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from shipyard.config.interpolate import interpolate
from shipyard.errors import ConfigError

Path = tuple[str | int, ...]
_NULL = "tag:yaml.org,2002:null"
_PLAIN_TAGS = {f"tag:yaml.org,2002:{kind}" for kind in ("str", "int", "float", "bool", "timestamp")}
_MAX_DEPTH = 64


@dataclass
class SourceMap:
    """Lines (1-based) of keys and list items by data path, plus which paths were copied from `defaults`."""

    lines: dict[Path, int] = field(default_factory=dict)
    copied: dict[Path, Path] = field(default_factory=dict)

    def line_for(self, path: Path) -> int:
        """Line of `path`, or of its nearest ancestor that has one (a missing key -> its parent)."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return 1

    def copy(self, src: Path, dst: Path) -> None:
        """Record that the value at `dst` was copied from `src` (defaults merging)."""
        self.copied[dst] = src
        for path, line in list(self.lines.items()):
            if path[: len(src)] == src:
                self.lines[dst + path[len(src):]] = line

    def origin(self, path: Path) -> Path:
        """Where the value at `path` was written: under `defaults` if it was copied from there."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.copied:
                return self.copied[path[:end]] + path[end:]
        return path


class _Reader:
    def __init__(self, file: str, environ: Mapping[str, str]) -> None:
        self.file, self.environ = file, environ
        self.source = SourceMap()
        self.problems: list[ConfigError] = []
        self.constructor = SafeConstructor()

    def fail(self, message: str, node: Node, path: Path) -> ConfigError:
        return ConfigError(message, file=self.file, line=node.start_mark.line + 1, key=dotted(path) or None)

    def convert(self, node: Node, path: Path, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise self.fail("nesting too deep (recursive anchor?)", node, path)
        if isinstance(node, MappingNode):
            return self.mapping(node, path, depth)
        if isinstance(node, SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.source.lines[(*path, index)] = item.start_mark.line + 1
                items.append(self.convert(item, (*path, index), depth + 1))
            return items
        assert isinstance(node, ScalarNode)
        if node.tag == _NULL:
            return None
        if node.tag not in _PLAIN_TAGS:
            raise self.fail(f"unsupported YAML tag {node.tag}", node, path)
        return self.scalar(node, path)

    def mapping(self, node: MappingNode, path: Path, depth: int) -> dict[str, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value != "<<":
                if key_node.value in seen:
                    raise self.fail(f"duplicate key {key_node.value!r}", key_node, (*path, key_node.value))
                seen.add(key_node.value)
        self.constructor.flatten_mapping(node)            # resolves `<<: *anchor` merge keys
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise self.fail("keys must be plain strings", key_node, path)
            key = key_node.value
            self.source.lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = self.convert(value_node, (*path, key), depth + 1)
        return result

    def scalar(self, node: ScalarNode, path: Path) -> str:
        text, problems = interpolate(node.value, self.environ)
        for offset, message in problems:
            line = node.start_mark.line + 1
            if node.style == "|":                          # literal block: point at the exact line
                line += 1 + node.value.count("\n", 0, offset)
            self.problems.append(ConfigError(message, file=self.file, line=line, key=dotted(path) or None))
        return text


def dotted(path: Path) -> str:
    """`services.api.deploy.strategy.steps[1].weight` from a data path."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def read_yaml(text: str, file: str, environ: Mapping[str, str]) -> tuple[Any, SourceMap, list[ConfigError]]:
    """Parse one YAML document with line tracking and interpolation.

    Syntax errors raise ConfigError (nothing else can be checked); interpolation problems are returned.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ConfigError(f"invalid YAML: {problem}", file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from None
    if node is None:
        raise ConfigError("the file is empty; expected a mapping with at least `project` and `environments`",
                          file=file, line=1)
    if not isinstance(node, MappingNode):
        kind = "a list" if isinstance(node, SequenceNode) else "a single value"
        raise ConfigError(f"the top level must be a mapping (key: value), not {kind}", file=file,
                          line=node.start_mark.line + 1)
    reader = _Reader(file, environ)
    reader.source.lines[()] = node.start_mark.line + 1
    data = reader.convert(node, ())
    return data, reader.source, reader.problems
