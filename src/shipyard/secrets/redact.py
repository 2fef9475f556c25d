"""Replace every registered secret value with `***` in text shipyard writes or prints.

Decisions (docs/secrets.md repeats them for users):
- Exact occurrences are replaced, longer values first, so a secret that contains another is masked whole.
- So are the forms a value takes on its way into a log (secrets/encodings.py): JSON and Python repr
  escaping, shell quoting (`shlex.quote`, `export -p` / `declare -x`, `printf %q`), URL and form
  encoding, HTML entities, base64 at any byte offset in either alphabet, and base64 wrapped over lines
  (PEM's 64 columns, MIME's 76, also inside JSON as `\\n`); and each line of a multi-line value (a PEM
  key printed line by line; the `-----BEGIN ...-----` armor stays readable).
- Values shorter than MIN_LENGTH are not registered: masking every "1" or "on" would wreck all output,
  and a value that short protects nothing. `shipyard env show` warns about such secrets.
- Speed: a form's longest literal stretch (its anchor) is looked for with str.find, and the regex of
  the forms whose anchors occur runs only in windows around the hits; text that holds no secret costs
  one substring scan per anchor. The wrapped-base64 pass starts from line ends (secrets/wrapped.py).
  Figures: bench/redact.py, docs/secrets.md.
- No global registry: a Redactor travels with the project/engine context; the renderer holds the one
  instance of its process (see cli/render.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shipyard.secrets import wrapped
from shipyard.secrets.encodings import Form, Token, base64_cores, escape_form

MASK = "***"
MIN_LENGTH = 4
ANCHOR_MIN = 4        # a form whose anchor would be shorter is searched for everywhere
_ARMOR = re.compile(r"-----(BEGIN|END) [A-Z0-9 ]+-----")


def _token_regex(token: Token) -> str:
    if len(token) == 1:
        return re.escape(token[0])
    return "(?:" + "|".join(re.escape(t) for t in token) + ")"


def _form_regex(form: Form) -> str:
    """The first token distributed over its spellings, so every alternative starts with a literal."""
    rest = "".join(_token_regex(t) for t in form[1:])
    return "|".join(re.escape(first) + rest for first in form[0])


def _forms(value: str) -> list[Form]:
    pieces = [value]
    if "\n" in value:
        pieces += [ln.strip() for ln in value.splitlines() if not _ARMOR.fullmatch(ln.strip())]
    forms = [escape_form(p) for p in dict.fromkeys(pieces) if len(p) >= MIN_LENGTH]
    return forms + [tuple((c,) for c in core) for core in sorted(base64_cores(value))]


@dataclass(frozen=True)
class _Anchor:
    """The longest stretch of characters every match of a form contains as they are, and how far a
    match can reach before and after it (to cut the window the regex must look at)."""

    text: str
    before: int
    after: int


def _anchor(form: Form) -> _Anchor | None:
    best, start, run = (0, 0), 0, 0
    for i, token in enumerate(form):
        run, start = (run + 1, start) if len(token) == 1 else (0, i + 1)
        if run > best[1] - best[0]:
            best = (start, start + run)
    if best[1] - best[0] < ANCHOR_MIN:
        return None
    spelled = [len(t[0]) for t in form]
    return _Anchor("".join(t[0] for t in form[best[0]:best[1]]), sum(spelled[:best[0]]), sum(spelled[best[1]:]))


def _viable(form: Form, text: str, pos: int) -> bool:
    """Could text[pos:] be the beginning of a match of `form` (and not a whole match)?"""
    stack = [(pos, 0)]
    end = len(text)
    while stack:
        at, i = stack.pop()
        if i == len(form):
            continue
        if at == end:
            return True
        for alt in form[i]:
            if text.startswith(alt, at):
                stack.append((at + len(alt), i + 1))
            elif end - at < len(alt) and alt.startswith(text[at:]):
                return True
    return False


class Redactor:
    """A set of secret values and the one regex that finds any of their forms."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: list[str] = []
        self._forms: list[Form] = []
        self._cores: set[str] = set()
        self._anchors: list[_Anchor | None] = []          # per form
        self._patterns: dict[int, re.Pattern[str]] = {}          # per form, compiled on first use
        self._core_pattern: re.Pattern[str] | None = None
        self._by_first: dict[str, list[Form]] = {}
        self._longest = 0
        self.add(*values)

    def add(self, *values: str) -> None:
        """Register values (short or empty ones are ignored, see the module docstring)."""
        for value in values:
            if not isinstance(value, str) or len(value) < MIN_LENGTH or value in self._values:
                continue
            self._values.append(value)
            for form in _forms(value):
                self._forms.append(form)
                self._anchors.append(_anchor(form))
                for first in form[0]:
                    self._by_first.setdefault(first[0], []).append(form)
                self._longest = max(self._longest, sum(len(t[0]) for t in form))
            self._cores |= base64_cores(value)
            self._patterns.clear()
            self._core_pattern = None

    def values(self) -> list[str]:
        """The registered raw values (to hand to another process that redacts, never to print)."""
        return list(self._values)

    def __bool__(self) -> bool:
        return bool(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def _live(self, text: str) -> tuple[frozenset[int], list[tuple[int, int]] | None]:
        """The forms that may occur in `text` and the windows of it the regex must look at (None: all).

        A form's anchor is found with str.find, many times faster than the regex engine trying every
        alternative at every position; so text with no secret costs one fast scan per anchor, and text
        with a few costs the regex over a few small windows. Every match of a form contains its anchor,
        and merging overlapping windows keeps every match whole inside one window.
        """
        live: set[int] = set()
        spans: list[tuple[int, int]] = []
        everywhere = False
        for i, anchor in enumerate(self._anchors):
            if anchor is None:
                live.add(i)
                everywhere = True
                continue
            at = text.find(anchor.text)
            while at >= 0:
                live.add(i)
                spans.append((at - anchor.before, at + len(anchor.text) + anchor.after))
                if len(spans) > 4096:
                    everywhere = True
                    break
                at = text.find(anchor.text, at + 1)
        if everywhere or not spans:
            return frozenset(live), None
        spans.sort()
        merged = [spans[0]]
        for start, end in spans[1:]:
            if start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return frozenset(live), [(max(0, a), min(len(text), b)) for a, b in merged]

    def _regex(self, index: int) -> re.Pattern[str]:
        """One form's regex, compiled once (a PEM key's is large; recompiling it per text would cost more
        than the search)."""
        pattern = self._patterns.get(index)
        if pattern is None:
            pattern = self._patterns[index] = re.compile(_form_regex(self._forms[index]))
        return pattern

    def _mask(self, text: str, live: list[int]) -> str:
        # Longer forms first, so a secret that contains another is masked whole.
        for index in live:
            text = self._regex(index).sub(MASK, text)
        return text

    def _cores_regex(self) -> re.Pattern[str] | None:
        if self._core_pattern is None and self._cores:
            cores = sorted(self._cores, key=lambda c: (-len(c), c))
            self._core_pattern = re.compile("|".join(map(re.escape, cores)))
        return self._core_pattern

    def redact(self, text: str) -> str:
        """`text` with every registered form replaced by `***`."""
        if not self._forms or not text:
            return text
        found, windows = self._live(text)
        live = sorted(found, key=lambda i: (-len(self._forms[i]), i))
        if live and windows is None:
            text = self._mask(text, live)
        elif live and windows is not None:
            parts, done = [], 0
            for start, end in windows:
                parts += [text[done:start], self._mask(text[start:end], live)]
                done = end
            text = "".join(parts) + text[done:]
        cores = self._cores_regex()
        if cores is not None and ("\n" in text or "\\n" in text):
            text = wrapped.unwrap(text, cores.finditer, self._longest, MASK)
        return text

    def redact_bytes(self, data: bytes) -> bytes:
        """Bytes in, bytes out (logs are bytes); undecodable bytes pass through as they were."""
        if not self._values:
            return data
        return self.redact(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")

    def redact_data(self, value: Any) -> Any:
        """Redact every string inside JSON-like data (dict keys included), keeping its shape."""
        if not self._values:
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.redact_data(k): self.redact_data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.redact_data(v) for v in value)
        return value

    def pending(self, text: str) -> int:
        """Length of the longest end of `text` that could be the start of a registered form.

        A stream redactor holds that many characters back until more data arrives, so a secret written
        in two pieces is still seen whole.
        """
        if not self._forms or not text:
            return 0
        best = wrapped.pending(text[max(0, len(text) - 2 * self._longest - 64):], self._cores)
        window = text[max(0, len(text) - self._longest):]
        for pos, ch in enumerate(window):
            if len(window) - pos <= best:
                break
            if any(_viable(form, window, pos) for form in self._by_first.get(ch, ())):
                return len(window) - pos
        return best

    def ready(self, data: bytes) -> int:
        """How many leading bytes of a log stream's buffer can be redacted and written now: every
        complete line, less the last ones when they may be the first lines of a wrapped base64 secret
        whose rest has not been read yet. Cheap for ordinary lines (called on every read)."""
        cut = data.rfind(b"\n") + 1
        if not cut or not self._cores:
            return cut
        tail = data[max(0, cut - 2 * self._longest - 64):cut].decode("utf-8", "surrogateescape")
        hold = wrapped.pending(tail, self._cores)
        return cut - len(tail[len(tail) - hold:].encode("utf-8", "surrogateescape")) if hold else cut


REDACT_ENV = "SHIPYARD_REDACT"
"""Reserved key of a launch environment: a JSON list of values the instance's log must mask. The local
agent takes it out of the app's environment (so it travels without changing the target API)."""
