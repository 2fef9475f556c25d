"""A built static site as objects to upload: keys, Content-Type, Cache-Control, and which differ from what a
prefix holds. Pure (apart from reading the build's files), so the rules are tested as data.

An object is unchanged when the prefix has it with the same size and an ETag equal to its MD5: what S3
gives a single-part PutObject. A re-deploy of the same build uploads nothing, and a changed build uploads
only the files that changed.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath

TYPES = {
    ".html": "text/html; charset=utf-8", ".htm": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8", ".json": "application/json", ".map": "application/json",
    ".svg": "image/svg+xml", ".woff2": "font/woff2", ".woff": "font/woff", ".wasm": "application/wasm",
    ".txt": "text/plain; charset=utf-8", ".xml": "application/xml", ".webmanifest": "application/manifest+json",
    ".ico": "image/x-icon", ".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp",
}
"""Set here rather than left to `mimetypes`, whose answers depend on the machine's /etc/mime.types."""


@dataclass(frozen=True)
class SiteFile:
    key: str                    # path inside the release, '/'-separated
    path: Path
    size: int
    md5: str
    content_type: str
    cache_control: str


@dataclass(frozen=True)
class Rules:
    immutable: tuple[str, ...]
    no_cache: tuple[str, ...]
    immutable_header: str
    no_cache_header: str
    default: str


def content_type(key: str) -> str:
    suffix = PurePosixPath(key).suffix.lower()
    if suffix in TYPES:
        return TYPES[suffix]
    guessed, _ = mimetypes.guess_type(key, strict=False)
    return guessed or "application/octet-stream"


@cache
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob as a regex: `*` any run of characters, `?` one, `[...]` a class, `{n}`/`{n,m}` a count of
    the item before. A pattern without '/' matches the file name, one with '/' the whole path."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise ValueError(f"glob {pattern!r}: '[' without ']'")
            out.append(pattern[i:end + 1])
            i = end
        elif c == "{":
            match = re.match(r"\{\d+(,\d*)?\}", pattern[i:])
            if match is None:
                raise ValueError(f"glob {pattern!r}: '{{' must start a count like {{8}}")
            out.append(match.group(0))
            i += len(match.group(0)) - 1
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


def matches(key: str, pattern: str) -> bool:
    subject = key if "/" in pattern else PurePosixPath(key).name
    return glob_regex(pattern).fullmatch(subject) is not None


def cache_control(key: str, rules: Rules) -> str:
    if any(matches(key, p) for p in rules.immutable):
        return rules.immutable_header
    if any(matches(key, p) for p in rules.no_cache):
        return rules.no_cache_header
    return rules.default


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def scan(root: Path, rules: Rules) -> list[SiteFile]:
    """Every regular file under `root` (symlinks followed only inside it), sorted by key."""
    found = []
    top = root.resolve()
    for path in sorted(root.rglob("*")):
        if not path.is_file() or not path.resolve().is_relative_to(top):
            continue
        key = path.relative_to(root).as_posix()
        found.append(SiteFile(key, path, path.stat().st_size, _md5(path), content_type(key),
                              cache_control(key, rules)))
    return found


def to_upload(files: Iterable[SiteFile], existing: Mapping[str, tuple[int, str]]) -> list[SiteFile]:
    """Files whose object under the prefix is missing or differs (size, or ETag vs MD5)."""
    return [f for f in files if existing.get(f.key) != (f.size, f.md5)]


def extra(files: Iterable[SiteFile], existing: Mapping[str, tuple[int, str]]) -> list[str]:
    """Keys the prefix holds that the build does not (a rebuild of the same sha that dropped a file)."""
    keys = {f.key for f in files}
    return sorted(k for k in existing if k not in keys)
