"""Base64 wrapped over lines (PEM's 64 columns, MIME's 76, `base64`'s default; also inside JSON as `\\n`):
find the runs, join their lines, and say how much of a stream's end may be the first lines of one.

A run is two or more pieces of base64 characters separated by line ends (real or JSON-escaped, with any
indentation after them), where every piece before a line end is at least WRAPPED_LINE characters long:
wrapped lines are 64 or 76, and ordinary prose (a word at the end of a line) stays out. Only the text's
first piece may be shorter (a log stream flushed mid-line goes on with the rest of that line). Finding
them starts from the line ends alone (a literal the regex engine skips to), so text with no base64 blob
costs little more than a scan for newlines.
"""

from __future__ import annotations

import bisect
import itertools
import re
import string
from collections.abc import Callable, Iterator

WRAPPED_LINE = 16
WRAP_MIN = 8          # a stream holds back an end spanning a line end if it is this long (or a whole line)
_B = "A-Za-z0-9+/_=-"
B64_CHARS = frozenset(string.ascii_letters + string.digits + "+/_=-")
_SEPS = ("\r\n", "\n", "\\r\\n", "\\n")
SEP = re.compile(r"(?:\r?\n|\\r\\n|\\n)[ \t]*")
_PIECE = re.compile(rf"[{_B}]+")
_FIRST = re.compile(rf"[{_B}]+(?:\r?\n|\\r\\n|\\n)[ \t]*(?=[{_B}])")
# A line end with WRAPPED_LINE base64 characters before it and one after (any indentation between).
_POINT = re.compile("|".join(
    rf"{re.escape(sep)}(?<=[{_B}]{{{WRAPPED_LINE}}}{re.escape(sep)})[ \t]*(?=[{_B}])" for sep in _SEPS))

Pieces = list[tuple[int, int]]


def runs(text: str, reach: int) -> Iterator[Pieces]:
    """Each wrapped run as its pieces' (start, end); a first piece is cut `reach` characters before its
    line end (no base64 core is longer)."""
    done = 0
    points = list(_POINT.finditer(text))
    first = _FIRST.match(text)
    if first is not None and (not points or points[0].start() > first.start()):
        points.insert(0, first)
    for point in points:
        if point.start() < done:
            continue                                   # a line end inside the run just reported
        sep = SEP.search(text, point.start() if point is not first else 0)
        assert sep is not None
        end = sep.start()
        start = end
        floor = max(done, end - reach)
        while start > floor and text[start - 1] in B64_CHARS:
            start -= 1
        pieces = [(start, end)]
        at = sep.end()
        while True:
            piece = _PIECE.match(text, at)
            if piece is None:
                break
            pieces.append((at, piece.end()))
            nxt = SEP.match(text, piece.end())
            if nxt is None or piece.end() - at < WRAPPED_LINE or _PIECE.match(text, nxt.end()) is None:
                break
            at = nxt.end()
        done = pieces[-1][1]
        yield pieces


def joined(text: str, pieces: Pieces) -> tuple[str, list[int]]:
    """The run's characters without its line ends, and where each one is in `text`."""
    return "".join(text[a:b] for a, b in pieces), [i for a, b in pieces for i in range(a, b)]


def unwrap(text: str, find: Callable[[str], Iterator[re.Match[str]]], reach: int, mask: str) -> str:
    """`text` with every match of `find` inside a wrapped run (line ends and all) replaced by `mask`."""
    out: list[str] = []
    done = 0
    for pieces in runs(text, reach):
        flat, where = joined(text, pieces)
        for hit in find(flat):
            begin, end = where[hit.start()], where[hit.end() - 1] + 1
            if begin >= done:
                out += [text[done:begin], mask]
                done = end
    return "".join(out) + text[done:] if out else text


def _trailing(text: str) -> list[tuple[int, int, bool]]:
    """The pieces of the run that ends `text`, first to last, each with whether it is a whole line."""
    pieces: list[tuple[int, int, bool]] = []
    end = len(text)
    while True:
        start = end
        while start > 0 and text[start - 1] in B64_CHARS:
            start -= 1
        if pieces and end - start < WRAPPED_LINE and start > 0:
            break                          # a short line before a line end: not a wrapped run
        at = start
        while at > 0 and text[at - 1] in " \t":
            at -= 1
        sep = next((s for s in _SEPS if text.endswith(s, 0, at)), None)
        pieces.append((start, end, sep is not None or at == 0))
        if sep is None:
            break
        end = at - len(sep)
    pieces.reverse()
    return pieces


def pending(text: str, cores: set[str]) -> int:
    """How much of the end of `text` may be a wrapped run's beginning of a core, spanning a line end.

    Held only when the line where it starts is all base64 (a line of a wrapped blob) or when it is at
    least WRAP_MIN characters long: a line of prose ending in a long word (a commit hash) would otherwise
    be held back whenever its last letters begin some core.
    """
    pieces = _trailing(text)
    if len(pieces) < 2:
        return 0                           # no line end inside: a single-line check covers it
    flat = "".join(text[a:b] for a, b, _ in pieces)
    spans = list(itertools.accumulate((b - a for a, b, _ in pieces), initial=0))   # piece starts in flat
    last = pieces[-1][1] - pieces[-1][0]
    best = 0
    for core in cores:
        # Candidate starts: where the core's first character occurs, before the last piece (the
        # held end must span a line end), no further back than the core is long; longest first.
        at = flat.find(core[0], max(0, len(flat) - len(core) + 1))
        while 0 <= at < len(flat) - last:
            piece = bisect.bisect_right(spans, at) - 1
            start, _, whole = pieces[piece]
            if (whole or len(flat) - at >= WRAP_MIN) and core.startswith(flat[at:]):
                best = max(best, len(text) - (start + at - spans[piece]))
                break
            at = flat.find(core[0], at + 1)
    return best
