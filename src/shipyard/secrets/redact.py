"""Replace every registered secret value with `***` in text shipyard writes or prints.

Decisions (docs/secrets.md repeats them for users):
- Exact occurrences are replaced, longest first, so a secret that contains another is masked whole.
- Cheap encodings an app or shipyard itself is likely to produce are caught too: JSON string escaping
  (a PEM key inside printed JSON), URL encoding (a password inside a DSN), base64 (basic-auth headers),
  and each line of a multi-line value (a PEM key printed line by line).
- Values shorter than MIN_LENGTH are not registered: masking every "1" or "on" would wreck all output,
  and a value that short protects nothing. `shipyard env show` warns about such secrets.
- No global registry: a Redactor travels with the project/engine context; the renderer holds the one
  instance of its process (see cli/render.py).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

MASK = "***"
MIN_LENGTH = 4
_ARMOR = re.compile(r"-----(BEGIN|END) [A-Z0-9 ]+-----")


def variants(value: str) -> set[str]:
    """The forms of `value` to mask: itself and its common encodings (each at least MIN_LENGTH long)."""
    forms = {value, json.dumps(value)[1:-1], quote(value, safe=""), quote(value, safe="/:@")}
    raw = value.encode()
    forms.add(base64.b64encode(raw).decode().rstrip("="))
    forms.add(base64.urlsafe_b64encode(raw).decode().rstrip("="))
    if "\n" in value:
        forms.update(line.strip() for line in value.splitlines() if not _ARMOR.fullmatch(line.strip()))
    return {f for f in forms if len(f) >= MIN_LENGTH}


class Redactor:
    """A set of secret values and the one regex that finds any of them."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: list[str] = []
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*values)

    def add(self, *values: str) -> None:
        """Register values (short or empty ones are ignored, see the module docstring)."""
        for value in values:
            if not isinstance(value, str) or len(value) < MIN_LENGTH or value in self._values:
                continue
            self._values.append(value)
            self._forms |= variants(value)
            self._pattern = None

    def values(self) -> list[str]:
        """The registered raw values (to hand to another process that redacts, never to print)."""
        return list(self._values)

    def __bool__(self) -> bool:
        return bool(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def _regex(self) -> re.Pattern[str] | None:
        if self._pattern is None and self._forms:
            ordered = sorted(self._forms, key=lambda f: (-len(f), f))
            self._pattern = re.compile("|".join(re.escape(f) for f in ordered))
        return self._pattern

    def redact(self, text: str) -> str:
        """`text` with every registered form replaced by `***`."""
        pattern = self._regex()
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

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
        best = 0
        for form in self._forms:
            for size in range(min(len(form) - 1, len(text)), best, -1):
                if text.endswith(form[:size]):
                    best = size
                    break
        return best


REDACT_ENV = "SHIPYARD_REDACT"
"""Reserved key of a launch environment: a JSON list of values the instance's log must mask. The local
agent takes it out of the app's environment (so it travels without changing the target API)."""
